"""Settings of the retrain-trigger service."""

from __future__ import annotations

from pydantic import Field

from lookout.core.settings import CommonSettings, ServerSettings


class RetrainSettings(CommonSettings, ServerSettings):
    retrain_group: str = Field("lookout-retrain", description="Consumer group of the retrain trigger.")
    retrain_policies: str | None = Field(
        None, description="Path of the retrain policy YAML (default: the packaged policies.yaml)."
    )
    retrain_dataset_dir: str = Field(
        ".lookout/datasets", description="Where dataset snapshots are written (one folder per run)."
    )
    retrain_output_dir: str = Field(".lookout/runs", description="Where local fine-tuning runs write their outputs.")
    retrain_launcher: str = Field("local", pattern="^(local|kubernetes|webhook)$",
                                  description="Job launcher: local, kubernetes or webhook.")
    retrain_base_model: str = Field("", description="Base model path or id handed to the fine-tuning job.")
    retrain_job_python: str = Field("", description="Python that runs jobs/finetune locally (default: this one).")
    retrain_job_args: str = Field("", description="Extra arguments for the fine-tuning job, space separated.")
    retrain_job_env: str = Field(
        "", description="Names of further environment variables a local job inherits, comma separated (it gets "
        "PATH, HOME, CUDA/HF cache and offline variables and its Kafka LOOKOUT_* settings, nothing else).")
    retrain_run_timeout_s: float = Field(
        3600.0, gt=0, description="A launched run that reports nothing for this long is marked timed_out."
    )
    retrain_watchdog_s: float = Field(5.0, gt=0, description="How often launched runs are checked for timeouts.")
    retrain_k8s_kubeconfig: str = Field(
        "", description="kubeconfig file of the cluster fine-tuning Jobs run on (its current context: server, CA, "
        "token, tokenFile or client certificate). Default: the pod's service account.")
    retrain_k8s_context: str = Field(
        "", description="Context of that kubeconfig to use (default: its current-context).")
    retrain_k8s_api: str = Field("", description="Kubernetes API URL (default: the kubeconfig's, else in-cluster).")
    retrain_k8s_namespace: str = Field(
        "default", description="Namespace of fine-tuning Jobs (unset: the kubeconfig context's or the pod's, else "
        "default).")
    retrain_k8s_image: str = Field("ghcr.io/lookout/finetune:latest", description="Image of the fine-tuning Job.")
    retrain_k8s_gpus: int = Field(1, ge=0, description="nvidia.com/gpu per fine-tuning Job.")
    retrain_k8s_sasl_secret: str = Field(
        "", description="Kubernetes Secret holding the Kafka SASL password for fine-tuning Jobs (needed when "
        "LOOKOUT_KAFKA_SASL_PASSWORD is set; the password never goes into the Job manifest).")
    retrain_k8s_sasl_secret_key: str = Field("kafka-sasl-password", description="Key of the password in that Secret.")
    retrain_k8s_token: str | None = Field(None, description="Kubernetes API bearer token (default: in-cluster).")
    retrain_k8s_token_file: str = Field(
        "", description="File holding the Kubernetes API bearer token, read again for every request (projected "
        "service-account tokens rotate). Default: the pod's service-account token.")
    retrain_k8s_ca_cert: str | None = Field(None, description="CA bundle of the Kubernetes API (default: in-cluster).")
    review_signing_secret: str = Field(
        "", description="Secret (16+ chars) that signs reviewer feedback; datasets take only reviews whose "
        "signature verifies. Required; the same on the feedback service and the retrain trigger.")
    retrain_webhook_url: str = Field("", description="URL the webhook launcher POSTs run requests to.")
    retrain_webhook_secret: str = Field("", description="HMAC-SHA256 key that signs webhook launcher requests.")
