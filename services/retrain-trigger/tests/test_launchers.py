"""Launchers: the Kubernetes Job manifest field by field and its creation against a local
server speaking the Jobs API; the webhook against a local server that checks the signature."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lookout.retrain_trigger.launchers import (
    KubernetesLauncher,
    LaunchRequest,
    WebhookLauncher,
    job_name,
    k8s_manifest,
    sign,
    verify,
)
from lookout.retrain_trigger.settings import RetrainSettings

RUN = uuid.UUID("0190d7a4-9a0c-7000-8000-000000000001")
REQ = LaunchRequest(run_id=RUN, app_id="Support.Bot", model="gpt-4o", rule="quality/thumbs",
                    dataset_uri="/data/datasets/r1", dataset_hash="ab" * 32, base_model="/models/base",
                    output_dir="/data/runs/r1", timeout_s=5400, job_args=["--max-steps", "100"])


def settings(**extra) -> RetrainSettings:
    values = dict(kafka_bootstrap="kafka:9092", topic_prefix="prod.", kafka_sasl_password="s3cret",
                  kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN", retrain_k8s_namespace="ml",
                  retrain_k8s_image="reg/finetune:1.2", retrain_k8s_gpus=2, retrain_k8s_sasl_secret="kafka-creds")
    return RetrainSettings(**{**values, **extra})


def test_kubernetes_manifest_field_by_field():
    m = k8s_manifest(REQ, settings())
    assert m["apiVersion"] == "batch/v1" and m["kind"] == "Job"
    meta = m["metadata"]
    assert meta["name"] == f"lookout-finetune-{RUN}" and len(meta["name"]) <= 63 and meta["namespace"] == "ml"
    assert meta["labels"] == {"app.kubernetes.io/name": "lookout-finetune", "app.kubernetes.io/part-of": "lookout",
                              "lookout.dev/run-id": str(RUN), "lookout.dev/app": "support-bot"}
    assert meta["annotations"]["lookout.dev/rule"] == "quality/thumbs"
    assert meta["annotations"]["lookout.dev/dataset-hash"] == "ab" * 32
    spec = m["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 5400
    assert spec["ttlSecondsAfterFinished"] == 7 * 86400
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    (c,) = pod["containers"]
    assert c["image"] == "reg/finetune:1.2" and c["command"] == ["python", "-m", "lookout.finetune"]
    assert c["args"] == ["--dataset", "/data/datasets/r1", "--base-model", "/models/base", "--output", "/data/runs/r1",
                         "--run-id", str(RUN), "--app-id", "Support.Bot", "--model", "gpt-4o", "--rule",
                         "quality/thumbs", "--dataset-hash", "ab" * 32, "--max-steps", "100"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2" and c["resources"]["requests"]["nvidia.com/gpu"] == "2"
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["LOOKOUT_KAFKA_BOOTSTRAP"] == "kafka:9092" and env["LOOKOUT_TOPIC_PREFIX"] == "prod."
    assert env["LOOKOUT_RUN_ID"] == str(RUN) and env["LOOKOUT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


def test_the_kubernetes_job_reads_the_sasl_password_from_a_secret_never_from_the_manifest():
    m = k8s_manifest(REQ, settings(retrain_k8s_sasl_secret_key="password"))
    assert "s3cret" not in json.dumps(m)
    (c,) = m["spec"]["template"]["spec"]["containers"]
    (entry,) = [e for e in c["env"] if e["name"] == "LOOKOUT_KAFKA_SASL_PASSWORD"]
    assert entry == {"name": "LOOKOUT_KAFKA_SASL_PASSWORD",
                     "valueFrom": {"secretKeyRef": {"name": "kafka-creds", "key": "password"}}}
    # Without SASL there is nothing secret to reference.
    plain = k8s_manifest(REQ, settings(kafka_sasl_password=None, kafka_security_protocol="PLAINTEXT"))
    assert all("valueFrom" not in e for e in plain["spec"]["template"]["spec"]["containers"][0]["env"])


def test_the_kubernetes_launcher_refuses_to_start_with_a_sasl_password_but_no_secret_name():
    with pytest.raises(ValueError, match="LOOKOUT_RETRAIN_K8S_SASL_SECRET"):
        KubernetesLauncher(settings(retrain_k8s_sasl_secret=""))
    with pytest.raises(ValueError, match="LOOKOUT_RETRAIN_K8S_SASL_SECRET"):
        k8s_manifest(REQ, settings(retrain_k8s_sasl_secret=""))


def test_no_gpu_no_gpu_resources():
    c = k8s_manifest(REQ, settings(retrain_k8s_gpus=0))["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in c["containers"][0]["resources"]["limits"] and c["tolerations"] == []


class _Server:
    """A local HTTP server; `handle(method, path, headers, body) -> (status, json)`."""

    def __init__(self, handle):
        outer = self
        self.seen: list[tuple[str, str, dict, bytes]] = []

        class H(BaseHTTPRequestHandler):
            def _do(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append((self.command, self.path, dict(self.headers), body))
                status, payload = handle(self.command, self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_DELETE = _do

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def k8s_api():
    jobs: dict[str, dict] = {}

    def handle(method, path, headers, body):
        if headers.get("Authorization") != "Bearer t0ken":
            return 401, {"kind": "Status", "code": 401}
        prefix = "/apis/batch/v1/namespaces/ml/jobs"
        if method == "POST" and path == prefix:
            job = json.loads(body)
            name = job["metadata"]["name"]
            if name in jobs:
                return 409, {"kind": "Status", "reason": "AlreadyExists", "code": 409}
            job["metadata"]["uid"] = f"uid-{len(jobs) + 1}"
            jobs[name] = job
            return 201, job
        if method == "DELETE" and path.startswith(prefix + "/"):
            name = path[len(prefix) + 1:].split("?")[0]
            return (200, {"kind": "Status", "status": "Success"}) if jobs.pop(name, None) else (404, {})
        return 404, {"kind": "Status", "code": 404}

    server = _Server(handle)
    server.jobs = jobs
    yield server
    server.close()


async def test_kubernetes_launcher_creates_the_job_once_and_cancels_it(k8s_api):
    launcher = KubernetesLauncher(settings(retrain_k8s_api=k8s_api.url, retrain_k8s_token="t0ken"))
    try:
        where = await launcher.launch(REQ)
        assert where == f"kubernetes job ml/{job_name(RUN)} uid uid-1"
        assert k8s_api.jobs[job_name(RUN)] == {**k8s_manifest(REQ, launcher.settings),
                                               "metadata": {**k8s_manifest(REQ, launcher.settings)["metadata"],
                                                            "uid": "uid-1"}}
        # A replayed launch of the same run is not a second job.
        assert "already exists" in await launcher.launch(REQ)
        assert len(k8s_api.jobs) == 1
        await launcher.cancel(RUN)
        assert k8s_api.jobs == {}
        assert k8s_api.seen[-1][1] == f"/apis/batch/v1/namespaces/ml/jobs/{job_name(RUN)}?propagationPolicy=Background"
    finally:
        await launcher.close()


async def test_the_token_file_is_read_again_for_every_request_so_a_rotated_token_is_used(k8s_api, tmp_path):
    token = tmp_path / "token"
    token.write_text("expired\n")
    launcher = KubernetesLauncher(settings(retrain_k8s_api=k8s_api.url, retrain_k8s_token_file=str(token)))
    try:
        with pytest.raises(RuntimeError, match=r"\(401\)"):
            await launcher.launch(REQ)
        token.write_text("t0ken\n")  # the kubelet rotated it
        assert "uid-1" in await launcher.launch(REQ)
        assert [h.get("Authorization") for _, _, h, _ in k8s_api.seen] == ["Bearer expired", "Bearer t0ken"]
    finally:
        await launcher.close()


def test_a_token_file_that_is_not_there_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="LOOKOUT_RETRAIN_K8S_TOKEN_FILE: no file at"):
        KubernetesLauncher(settings(retrain_k8s_token_file=str(tmp_path / "missing")))


async def test_kubernetes_launcher_reports_a_refusal(k8s_api):
    launcher = KubernetesLauncher(settings(retrain_k8s_api=k8s_api.url, retrain_k8s_token="wrong"))
    try:
        with pytest.raises(RuntimeError, match=r"kubernetes refused the job \(401\)"):
            await launcher.launch(REQ)
    finally:
        await launcher.close()


def test_signature_verification():
    ts = str(int(time.time()))
    sig = sign("k", ts, b"{}")
    assert verify("k", ts, b"{}", sig)
    assert not verify("other", ts, b"{}", sig)
    assert not verify("k", ts, b"{ }", sig)
    assert not verify("k", str(int(ts) - 3600), b"{}", sign("k", str(int(ts) - 3600), b"{}"))
    # A receiver reads the headers latin-1 decoded: a non-ASCII signature is a mismatch, not a TypeError.
    assert not verify("k", ts, b"{}", sig[:-1] + "\xe9")
    assert not verify("k", ts, b"{}", "sha256=\u00ff\u0100")


async def test_webhook_launcher_posts_a_signed_request():
    secret = "hook-secret-0123456789"

    def handle(method, path, headers, body):
        ok = verify(secret, headers["X-Lookout-Timestamp"], body, headers["X-Lookout-Signature"])
        return (202, {"accepted": True}) if ok else (401, {"error": "bad signature"})

    server = _Server(handle)
    launcher = WebhookLauncher(settings(retrain_webhook_url=server.url + "/hooks/retrain",
                                        retrain_webhook_secret=secret))
    try:
        assert await launcher.launch(REQ) == f"webhook {server.url}/hooks/retrain answered 202"
        method, path, headers, body = server.seen[-1]
        assert (method, path, headers["X-Lookout-Run-Id"]) == ("POST", "/hooks/retrain", str(RUN))
        payload = json.loads(body)
        assert payload["run_id"] == str(RUN) and payload["dataset_hash"] == "ab" * 32
        assert payload["argv"][:3] == ["python", "-m", "lookout.finetune"]
        assert "LOOKOUT_KAFKA_SASL_PASSWORD" not in payload["env"]  # never sent to a third party
        # The same request signed with another key is refused by the receiver.
        bad = WebhookLauncher(settings(retrain_webhook_url=server.url, retrain_webhook_secret="wrong-secret"))
        with pytest.raises(RuntimeError, match="webhook answered 401"):
            await bad.launch(REQ)
        await bad.close()
    finally:
        await launcher.close()
        server.close()


def test_webhook_launcher_needs_url_and_secret():
    with pytest.raises(ValueError, match="LOOKOUT_RETRAIN_WEBHOOK_URL"):
        WebhookLauncher(settings())


async def test_local_launcher_reports_the_exit_of_its_job(tmp_path):
    from lookout.retrain_trigger.launchers import LocalLauncher

    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\necho \"args: $*\"\nexit 7\n")
    script.chmod(0o755)
    exits: list = []
    done = asyncio.Event()

    async def on_exit(run_id, code, tail):
        exits.append((run_id, code, tail))
        done.set()

    launcher = LocalLauncher(RetrainSettings(retrain_job_python=str(script)), on_exit)
    where = await launcher.launch(REQ.__class__(**{**REQ.__dict__, "output_dir": str(tmp_path / "out")}))
    assert where.startswith("local pid ")
    await asyncio.wait_for(done.wait(), 10)
    ((run_id, code, tail),) = exits
    assert run_id == RUN and code == 7 and "-m lookout.finetune --dataset /data/datasets/r1" in tail
    await launcher.close()


async def test_a_local_job_gets_an_allow_listed_environment_not_the_services(tmp_path, monkeypatch):
    from lookout.retrain_trigger.launchers import LocalLauncher

    # What the service's own environment holds: secrets the job must never see, and what it needs.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret")
    monkeypatch.setenv("LOOKOUT_PII_SECRET", "pii-secret-0123456789")
    monkeypatch.setenv("LOOKOUT_REVIEW_SIGNING_SECRET", "signing-secret-0123456789")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("MY_EXTRA", "passed-on-request")
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\nenv\n")
    script.chmod(0o755)
    done = asyncio.Event()

    async def on_exit(run_id, code, tail):
        done.set()

    s = RetrainSettings(retrain_job_python=str(script), kafka_bootstrap="broker:9092", topic_prefix="t.",
                        retrain_job_env="MY_EXTRA")
    launcher = LocalLauncher(s, on_exit)
    out = tmp_path / "out"
    await launcher.launch(REQ.__class__(**{**REQ.__dict__, "output_dir": str(out)}))
    await asyncio.wait_for(done.wait(), 10)
    await launcher.close()
    env = dict(line.split("=", 1) for line in (out / "job.log").read_text().splitlines() if "=" in line)
    assert env["LOOKOUT_KAFKA_BOOTSTRAP"] == "broker:9092" and env["LOOKOUT_TOPIC_PREFIX"] == "t."
    assert env["LOOKOUT_RUN_ID"] == str(RUN)
    assert env["HF_HUB_OFFLINE"] == "1" and env["CUDA_VISIBLE_DEVICES"] == "0"
    assert env["MY_EXTRA"] == "passed-on-request"
    assert "PATH" in env
    for leaked in ("AWS_SECRET_ACCESS_KEY", "LOOKOUT_PII_SECRET", "LOOKOUT_REVIEW_SIGNING_SECRET"):
        assert leaked not in env, leaked
