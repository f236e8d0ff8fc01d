"""Job launchers: where a retrain run's fine-tuning job runs. Each takes a LaunchRequest
and returns a short description of what it started; the job itself reports its states
on llm.retrain.status. A launcher that can tell a job died (the local one) says so through
`on_exit`, so a crash is marked failed at once rather than at the timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import shlex
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from lookout.core.auth import same_secret
from lookout.core.settings import CommonSettings

from .kubeconfig import SERVICE_ACCOUNT, api_access
from .settings import RetrainSettings

log = logging.getLogger(__name__)

# (run_id, exit code, last lines of stderr) when a local job exits.
ExitCallback = Callable[[uuid.UUID, int, str], Awaitable[None]]


@dataclass(frozen=True)
class LaunchRequest:
    run_id: uuid.UUID
    app_id: str
    model: str
    rule: str
    dataset_uri: str
    dataset_hash: str
    base_model: str
    output_dir: str
    timeout_s: float
    job_args: list[str] = field(default_factory=list)

    def job_argv(self) -> list[str]:
        """Arguments of `python -m lookout.finetune`, the same for every launcher."""
        return [
            "--dataset", self.dataset_uri, "--base-model", self.base_model, "--output", self.output_dir,
            "--run-id", str(self.run_id), "--app-id", self.app_id, "--model", self.model, "--rule", self.rule,
            "--dataset-hash", self.dataset_hash, *self.job_args,
        ]


class Launcher(Protocol):
    async def launch(self, req: LaunchRequest) -> str: ...

    async def cancel(self, run_id: uuid.UUID) -> None: ...

    async def close(self) -> None: ...


_KAFKA_KEYS = ("kafka_bootstrap", "kafka_idempotence", "kafka_security_protocol", "kafka_sasl_mechanism",
               "kafka_sasl_username", "kafka_sasl_password", "kafka_ssl_cafile", "kafka_ssl_certfile",
               "kafka_ssl_keyfile", "topic_prefix")
SASL_PASSWORD_VAR = "LOOKOUT_KAFKA_SASL_PASSWORD"


def kafka_env(settings: CommonSettings) -> dict[str, str]:
    """The LOOKOUT_* variables a job needs to report on the same broker and topics."""
    values = settings.model_dump()
    return {f"LOOKOUT_{k.upper()}": str(values[k]) for k in _KAFKA_KEYS if values.get(k) not in (None, "")}


# What a local job inherits from this service's environment besides its own LOOKOUT_*
# variables: enough to find its Python and libraries, its GPU, and the model caches (and
# to stay offline). Everything else (other services' secrets, cloud credentials, the
# service's own LOOKOUT_* settings such as the PII or signing secrets) stays behind.
JOB_ENV_ALLOW = (
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH",
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_HOME",
    "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
    "TRANSFORMERS_CACHE", "HF_HUB_DISABLE_TELEMETRY",
)


def local_job_env(settings: RetrainSettings, run_id: uuid.UUID, parent: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a local job: the allow-listed variables of this process
    (plus LOOKOUT_RETRAIN_JOB_ENV's names), then the job's Kafka settings and run id."""
    parent = os.environ if parent is None else parent
    names = {*JOB_ENV_ALLOW, *(n.strip() for n in settings.retrain_job_env.split(",") if n.strip())}
    env = {name: parent[name] for name in sorted(names) if name in parent}
    env.update(kafka_env(settings))
    env["LOOKOUT_RUN_ID"] = str(run_id)
    return env


def _open_log(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    return open(out / "job.log", "ab")  # closed by the watcher when the job exits


def _tail(path: Path, n: int = 2000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


class LocalLauncher:
    """Runs jobs/finetune as a child process of this service (one machine, or tests)."""

    def __init__(self, settings: RetrainSettings, on_exit: ExitCallback | None = None):
        self.settings = settings
        self.on_exit = on_exit
        self.python = settings.retrain_job_python or sys.executable
        self.procs: dict[uuid.UUID, asyncio.subprocess.Process] = {}
        self._watchers: set[asyncio.Task] = set()

    async def launch(self, req: LaunchRequest) -> str:
        out = Path(req.output_dir)
        env = local_job_env(self.settings, req.run_id)
        argv = [self.python, "-m", "lookout.finetune", *req.job_argv()]
        log_file = await asyncio.to_thread(_open_log, out)
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=log_file, stderr=log_file)
        self.procs[req.run_id] = proc
        task = asyncio.create_task(self._watch(req.run_id, proc, log_file, out / "job.log"))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return f"local pid {proc.pid}: {shlex.join(argv)}"

    async def _watch(self, run_id: uuid.UUID, proc: asyncio.subprocess.Process, log_file, log_path: Path) -> None:
        code = await proc.wait()
        log_file.close()
        self.procs.pop(run_id, None)
        if self.on_exit is not None:
            tail = await asyncio.to_thread(_tail, log_path)
            await self.on_exit(run_id, code, tail)

    async def cancel(self, run_id: uuid.UUID) -> None:
        proc = self.procs.get(run_id)
        if proc is not None and proc.returncode is None:
            proc.kill()

    async def close(self) -> None:
        for run_id in list(self.procs):
            await self.cancel(run_id)
        for task in list(self._watchers):
            task.cancel()


_DNS = re.compile(r"[^a-z0-9-]+")


def job_name(run_id: uuid.UUID) -> str:
    return f"lookout-finetune-{run_id}"  # 53 characters: within the 63 a label value allows


def _label(value: str) -> str:
    """A Kubernetes label value (63 characters of [a-z0-9-_.], alphanumeric at both ends)."""
    return _DNS.sub("-", value.lower()).strip("-")[:63].strip("-") or "unknown"


def k8s_manifest(req: LaunchRequest, settings: RetrainSettings) -> dict[str, Any]:
    """The batch/v1 Job for one run: one pod, never restarted (a retry is a new run), GPU
    limits, the run's deadline as activeDeadlineSeconds, status reported on Kafka. The SASL
    password never appears in the manifest (which anyone who may read Jobs can see): the
    pod reads it from the Secret LOOKOUT_RETRAIN_K8S_SASL_SECRET names."""
    values = kafka_env(settings)
    has_password = values.pop(SASL_PASSWORD_VAR, None) is not None
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(values.items())]
    if has_password:
        if not settings.retrain_k8s_sasl_secret:
            raise ValueError("the Kafka SASL password must reach the job through a Kubernetes Secret: set "
                             "LOOKOUT_RETRAIN_K8S_SASL_SECRET to its name (key: LOOKOUT_RETRAIN_K8S_SASL_SECRET_KEY)")
        env.append({"name": SASL_PASSWORD_VAR, "valueFrom": {"secretKeyRef": {
            "name": settings.retrain_k8s_sasl_secret, "key": settings.retrain_k8s_sasl_secret_key}}})
    env.append({"name": "LOOKOUT_RUN_ID", "value": str(req.run_id)})
    resources: dict[str, Any] = {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"memory": "64Gi"}}
    tolerations = []
    if settings.retrain_k8s_gpus:
        gpus = str(settings.retrain_k8s_gpus)
        resources["requests"]["nvidia.com/gpu"] = gpus
        resources["limits"]["nvidia.com/gpu"] = gpus
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
    labels = {"app.kubernetes.io/name": "lookout-finetune", "app.kubernetes.io/part-of": "lookout",
              "lookout.dev/run-id": str(req.run_id), "lookout.dev/app": _label(req.app_id)}
    annotations = {"lookout.dev/app-id": req.app_id, "lookout.dev/model": req.model, "lookout.dev/rule": req.rule,
                   "lookout.dev/dataset-uri": req.dataset_uri, "lookout.dev/dataset-hash": req.dataset_hash}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(req.run_id), "namespace": settings.retrain_k8s_namespace, "labels": labels,
                     "annotations": annotations},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(req.timeout_s),
            "ttlSecondsAfterFinished": 7 * 86400,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "tolerations": tolerations,
                    "containers": [{
                        "name": "finetune",
                        "image": settings.retrain_k8s_image,
                        "command": ["python", "-m", "lookout.finetune"],
                        "args": req.job_argv(),
                        "env": env,
                        "resources": resources,
                    }],
                },
            },
        },
    }


class KubernetesLauncher:
    """Creates the Job through the Kubernetes REST API (POST .../namespaces/{ns}/jobs), the
    call the official client makes, without its dependency tree. The API URL and
    credentials come from a kubeconfig (LOOKOUT_RETRAIN_K8S_KUBECONFIG), else from the pod's
    service account; the explicit settings override either (kubeconfig.py). The Jobs'
    namespace is LOOKOUT_RETRAIN_K8S_NAMESPACE when set, else the kubeconfig context's (or
    the pod's), else "default"."""

    def __init__(self, settings: RetrainSettings, transport: httpx.AsyncBaseTransport | None = None,
                 service_account: Path = SERVICE_ACCOUNT):
        if settings.kafka_sasl_password and not settings.retrain_k8s_sasl_secret:
            # At start, not at the first firing: a run should never fail for a setting.
            raise ValueError("the kubernetes launcher passes the Kafka SASL password as a Secret reference: set "
                             "LOOKOUT_RETRAIN_K8S_SASL_SECRET to the name of a Secret that holds it")
        access = api_access(settings, service_account)
        if access.namespace and "retrain_k8s_namespace" not in settings.model_fields_set:
            settings = settings.model_copy(update={"retrain_k8s_namespace": access.namespace})
        self.settings = settings
        self.api = access.server
        self.source = access.source
        self.http = httpx.AsyncClient(base_url=self.api, auth=access.auth, verify=access.verify, timeout=30,
                                      transport=transport)
        log.info("kubernetes launcher: API %s (%s), namespace %s", self.api, self.source,
                 settings.retrain_k8s_namespace)

    def _jobs(self) -> str:
        return f"/apis/batch/v1/namespaces/{self.settings.retrain_k8s_namespace}/jobs"

    async def launch(self, req: LaunchRequest) -> str:
        manifest = k8s_manifest(req, self.settings)
        r = await self.http.post(self._jobs(), json=manifest)
        if r.status_code == 409:
            return f"kubernetes job {job_name(req.run_id)} already exists"  # a replayed launch
        if r.status_code >= 300:
            raise RuntimeError(f"kubernetes refused the job ({r.status_code}): {r.text[:500]}")
        uid = r.json().get("metadata", {}).get("uid", "")
        return f"kubernetes job {self.settings.retrain_k8s_namespace}/{job_name(req.run_id)} uid {uid}"

    async def cancel(self, run_id: uuid.UUID) -> None:
        await self.http.delete(f"{self._jobs()}/{job_name(run_id)}", params={"propagationPolicy": "Background"})

    async def close(self) -> None:
        await self.http.aclose()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over "<timestamp>.<body>" (the timestamp bounds replays)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, max_age_s: float = 300,
           now: float | None = None) -> bool:
    """What a receiver checks: the signature, in constant time, and a fresh timestamp."""
    try:
        age = abs((now or time.time()) - float(timestamp))
    except ValueError:
        return False
    return age <= max_age_s and same_secret(signature, sign(secret, timestamp, body))


class WebhookLauncher:
    """POSTs the run to a CI or orchestrator URL, signed with HMAC-SHA256 in
    X-Lookout-Signature over X-Lookout-Timestamp + "." + body."""

    def __init__(self, settings: RetrainSettings, transport: httpx.AsyncBaseTransport | None = None):
        if not settings.retrain_webhook_url or not settings.retrain_webhook_secret:
            raise ValueError("the webhook launcher needs LOOKOUT_RETRAIN_WEBHOOK_URL and "
                             "LOOKOUT_RETRAIN_WEBHOOK_SECRET")
        self.settings = settings
        self.http = httpx.AsyncClient(timeout=30, transport=transport)

    def body(self, req: LaunchRequest) -> bytes:
        payload = {**asdict(req), "run_id": str(req.run_id), "argv": ["python", "-m", "lookout.finetune",
                                                                     *req.job_argv()],
                   "env": {k: v for k, v in kafka_env(self.settings).items() if "PASSWORD" not in k}}
        return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)

    async def launch(self, req: LaunchRequest) -> str:
        body = self.body(req)
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Lookout-Timestamp": ts,
                   "X-Lookout-Signature": sign(self.settings.retrain_webhook_secret, ts, body),
                   "X-Lookout-Run-Id": str(req.run_id)}
        r = await self.http.post(self.settings.retrain_webhook_url, content=body, headers=headers)
        if r.status_code >= 300:
            raise RuntimeError(f"webhook answered {r.status_code}: {r.text[:500]}")
        return f"webhook {self.settings.retrain_webhook_url} answered {r.status_code}"

    async def cancel(self, run_id: uuid.UUID) -> None:
        return None  # the receiver owns the job; a timed_out status on Kafka tells it

    async def close(self) -> None:
        await self.http.aclose()


def make_launcher(settings: RetrainSettings, on_exit: ExitCallback | None = None) -> Launcher:
    if settings.retrain_launcher == "kubernetes":
        return KubernetesLauncher(settings)
    if settings.retrain_launcher == "webhook":
        return WebhookLauncher(settings)
    return LocalLauncher(settings, on_exit)
