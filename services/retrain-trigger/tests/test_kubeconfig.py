"""The Kubernetes launcher's API access (kubeconfig.py) against a local HTTPS server that
speaks the Jobs API and checks what a real API server checks: its certificate is signed by
a test CA (trustme), it asks for a client certificate, and it reads the bearer token of
every request. Kubeconfig files are written as kubectl writes them."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import trustme
import yaml

from lookout.retrain_trigger.kubeconfig import KubeconfigError, from_kubeconfig
from lookout.retrain_trigger.launchers import KubernetesLauncher, LaunchRequest, job_name
from lookout.retrain_trigger.settings import RetrainSettings

RUN = uuid.UUID("0190d7a4-9a0c-7000-8000-0000000000aa")
REQ = LaunchRequest(run_id=RUN, app_id="support", model="gpt-4o", rule="quality/thumbs",
                    dataset_uri="/data/datasets/r1", dataset_hash="cd" * 32, base_model="/models/base",
                    output_dir="/data/runs/r1", timeout_s=600)


class FakeApiServer:
    """HTTPS on 127.0.0.1 with a trustme CA. Accepts a Job when the request carries
    `Bearer <token>` (any token in `tokens`) or a client certificate the CA signed; records
    what each request presented."""

    def __init__(self, ca: trustme.CA, tokens: set[str]):
        outer = self
        self.tokens = tokens
        self.seen: list[dict] = []
        self.jobs: dict[str, dict] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                peer = self.connection.getpeercert()  # type: ignore[attr-defined]  # an SSLSocket
                subject = dict(pair[0] for pair in peer["subject"]) if peer else {}
                auth = self.headers.get("Authorization")
                outer.seen.append({"path": self.path, "auth": auth, "client_cn": subject.get("commonName")})
                if not (subject or (auth and auth.removeprefix("Bearer ") in outer.tokens)):
                    return self._send(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
                job = json.loads(body)
                job["metadata"]["uid"] = f"uid-{len(outer.jobs) + 1}"
                outer.jobs[self.path] = job
                return self._send(201, job)

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(ctx)
        ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, when sent, must be the CA's
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def api(ca):
    server = FakeApiServer(ca, tokens={"t0ken"})
    yield server
    server.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_kubeconfig(path: Path, current: str, contexts: dict[str, dict], clusters: dict[str, dict],
                     users: dict[str, dict]) -> Path:
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": current,
           "contexts": [{"name": n, "context": c} for n, c in contexts.items()],
           "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
           "users": [{"name": n, "user": u} for n, u in users.items()]}
    path.write_text(yaml.safe_dump(doc))
    return path


def launcher(**values) -> KubernetesLauncher:
    # No namespace given: the kubeconfig context's (or the pod's) is used.
    return KubernetesLauncher(RetrainSettings(retrain_k8s_image="reg/finetune:1", **values),
                              service_account=Path("/nonexistent"))


async def test_a_kubeconfig_with_inline_ca_and_client_certificate_creates_the_job_in_its_contexts_namespace(
        api, ca, tmp_path):
    # A name in the certificate's SAN as well: cryptography 51 refuses an empty SAN list,
    # which trustme writes for a certificate of no identities.
    client = ca.issue_cert("lookout-retrain", common_name="lookout-retrain")
    config = write_kubeconfig(
        tmp_path / "config", "lab",
        contexts={"lab": {"cluster": "lab", "user": "retrain", "namespace": "ml-lab"},
                  "prod": {"cluster": "prod", "user": "nobody"}},
        clusters={"lab": {"server": api.url, "certificate-authority-data": b64(ca.cert_pem.bytes())},
                  "prod": {"server": "https://prod.invalid:6443"}},
        users={"retrain": {"client-certificate-data": b64(client.cert_chain_pems[0].bytes()),
                           "client-key-data": b64(client.private_key_pem.bytes())},
               "nobody": {}},
    )
    k8s = launcher(retrain_k8s_kubeconfig=str(config))
    try:
        where = await k8s.launch(REQ)
    finally:
        await k8s.close()
    assert where == f"kubernetes job ml-lab/{job_name(RUN)} uid uid-1"
    (seen,) = api.seen
    assert seen == {"path": "/apis/batch/v1/namespaces/ml-lab/jobs", "auth": None, "client_cn": "lookout-retrain"}
    assert api.jobs[seen["path"]]["metadata"]["namespace"] == "ml-lab"
    assert k8s.source == f"kubeconfig {config} (context 'lab')"


async def test_a_kubeconfig_token_file_is_read_again_for_every_request(api, ca, tmp_path):
    """Relative paths are the kubeconfig's folder's (kubectl's rule); the token file is
    rewritten between two requests, as the kubelet rotates a projected token."""
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "token").write_text("expired\n")
    config = write_kubeconfig(
        tmp_path / "config", "other",
        contexts={"other": {"cluster": "nowhere", "user": "u"}, "lab": {"cluster": "lab", "user": "sa"}},
        clusters={"nowhere": {"server": "https://nowhere.invalid"},
                  "lab": {"server": api.url, "certificate-authority": "ca.pem"}},
        users={"u": {}, "sa": {"tokenFile": "token"}},
    )
    k8s = launcher(retrain_k8s_kubeconfig=str(config), retrain_k8s_context="lab", retrain_k8s_namespace="ml")
    try:
        with pytest.raises(RuntimeError, match=r"kubernetes refused the job \(401\)"):
            await k8s.launch(REQ)
        (tmp_path / "token").write_text("t0ken\n")
        assert "uid-1" in await k8s.launch(REQ)
    finally:
        await k8s.close()
    assert [s["auth"] for s in api.seen] == ["Bearer expired", "Bearer t0ken"]
    assert api.seen[-1]["path"] == "/apis/batch/v1/namespaces/ml/jobs"  # the setting beats the context


async def test_the_in_cluster_service_account_token_is_read_again_for_every_request(api, ca, tmp_path):
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("expired")
    ca.cert_pem.write_to_path(str(sa / "ca.crt"))
    (sa / "namespace").write_text("lookout\n")
    # The API URL is the only override: kubernetes.default.svc does not resolve here.
    k8s = KubernetesLauncher(RetrainSettings(retrain_k8s_api=api.url), service_account=sa)
    try:
        with pytest.raises(RuntimeError, match=r"\(401\)"):
            await k8s.launch(REQ)
        (sa / "token").write_text("t0ken")  # the kubelet rotated it
        assert "uid-1" in await k8s.launch(REQ)
    finally:
        await k8s.close()
    assert [s["auth"] for s in api.seen] == ["Bearer expired", "Bearer t0ken"]
    assert api.seen[-1]["path"] == "/apis/batch/v1/namespaces/lookout/jobs"  # the pod's namespace
    assert k8s.source == "in-cluster service account"


async def test_explicit_settings_override_the_kubeconfig(api, ca, tmp_path):
    config = write_kubeconfig(
        tmp_path / "config", "lab", contexts={"lab": {"cluster": "lab", "user": "u"}},
        clusters={"lab": {"server": "https://elsewhere.invalid:6443",
                          "certificate-authority-data": b64(ca.cert_pem.bytes())}},
        users={"u": {"token": "stale"}},
    )
    k8s = launcher(retrain_k8s_kubeconfig=str(config), retrain_k8s_api=api.url, retrain_k8s_token="t0ken")
    try:
        assert "uid-1" in await k8s.launch(REQ)
    finally:
        await k8s.close()
    assert api.seen[0]["auth"] == "Bearer t0ken"
    assert api.seen[0]["path"] == "/apis/batch/v1/namespaces/default/jobs"


async def test_a_server_certificate_from_another_ca_is_refused(api, tmp_path):
    config = write_kubeconfig(
        tmp_path / "config", "lab", contexts={"lab": {"cluster": "lab", "user": "u"}},
        clusters={"lab": {"server": api.url, "certificate-authority-data": b64(trustme.CA().cert_pem.bytes())}},
        users={"u": {"token": "t0ken"}},
    )
    k8s = launcher(retrain_k8s_kubeconfig=str(config))
    try:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await k8s.launch(REQ)
    finally:
        await k8s.close()
    assert api.jobs == {}


def _config(tmp_path: Path, user: dict, cluster: dict | None = None, current: str = "c") -> Path:
    return write_kubeconfig(tmp_path / "config", current, contexts={"c": {"cluster": "k", "user": "u"}},
                            clusters={"k": cluster or {"server": "https://k.invalid"}}, users={"u": user})


@pytest.mark.parametrize(("user", "cluster", "current", "message"), [
    ({"exec": {"command": "aws", "args": ["eks", "get-token"]}}, None, "c", "exec plugin, which this launcher"),
    ({"auth-provider": {"name": "gcp"}}, None, "c", "auth-provider plugin"),
    ({"token": "x"}, None, "missing", "no context named 'missing'"),
    ({"token": "x"}, {"server": "k.invalid:6443"}, "c", r"server must be an http\(s\) URL"),
    ({"token": "x"}, {"server": "https://k.invalid", "certificate-authority-data": "not base64!"}, "c",
     "certificate-authority-data is not base64"),
    ({"token": "x"}, {"server": "https://k.invalid", "certificate-authority": "missing.pem"}, "c",
     "certificate-authority: no file at"),
    ({"client-certificate-data": b64(b"x")}, None, "c", "needs both client-certificate"),
    ({"tokenFile": "gone"}, None, "c", "tokenFile: no file at"),
])
def test_a_kubeconfig_the_launcher_cannot_use_is_refused_at_start_naming_the_field(
        tmp_path, user, cluster, current, message):
    path = _config(tmp_path, user, cluster, current)
    with pytest.raises(KubeconfigError, match=message):
        from_kubeconfig(path)
    with pytest.raises(KubeconfigError, match=message):
        launcher(retrain_k8s_kubeconfig=str(path))


def test_a_missing_or_malformed_kubeconfig_is_refused(tmp_path):
    with pytest.raises(KubeconfigError, match="LOOKOUT_RETRAIN_K8S_KUBECONFIG: no file at"):
        from_kubeconfig(tmp_path / "absent")
    (tmp_path / "list").write_text("- just\n- a list\n")
    with pytest.raises(KubeconfigError, match="not a kubeconfig"):
        from_kubeconfig(tmp_path / "list")
    (tmp_path / "nocurrent").write_text(yaml.safe_dump({"contexts": []}))
    with pytest.raises(KubeconfigError, match="LOOKOUT_RETRAIN_K8S_CONTEXT"):
        from_kubeconfig(tmp_path / "nocurrent")
