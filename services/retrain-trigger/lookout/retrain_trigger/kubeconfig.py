"""Where the Kubernetes launcher finds the API and its credentials, as kubectl does.

Three sources, the first that applies:

1. a kubeconfig file (LOOKOUT_RETRAIN_K8S_KUBECONFIG): its current context (or
   LOOKOUT_RETRAIN_K8S_CONTEXT) names a cluster (`server`, `certificate-authority` or
   `certificate-authority-data`, `insecure-skip-tls-verify`) and a user (`token`,
   `tokenFile`, `client-certificate(-data)` + `client-key(-data)`, `username`/`password`);
   relative paths are relative to the file, as kubectl reads them;
2. in a pod, the service account: https://kubernetes.default.svc, its CA and its token;
3. nothing: the settings alone (LOOKOUT_RETRAIN_K8S_API and friends).

The explicit settings (API URL, token, token file, CA) override whatever the kubeconfig or
the service account give. A token file is read again for every request: the kubelet
rewrites a projected service-account token before it expires (about an hour), so a token
read once at start would be refused for the rest of the process's life.

`exec` and `auth-provider` users (cloud plugins such as `aws eks get-token`) are refused at
start with the reason: run the service with a service-account token or a client
certificate instead.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from .settings import RetrainSettings

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_API = "https://kubernetes.default.svc"
MAX_KUBECONFIG_BYTES = 4 * 1024 * 1024  # kubectl's files are kilobytes; a bigger one is not a kubeconfig


class KubeconfigError(ValueError):
    """A kubeconfig the launcher cannot use; the message names the file and the field."""


class TokenFile(httpx.Auth):
    """A bearer token read from its file for every request (see the module doc)."""

    def __init__(self, path: Path):
        self.path = path

    def auth_flow(self, request: httpx.Request):
        token = self.path.read_text().strip()  # a few dozen bytes, small enough for the event loop
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


class StaticToken(httpx.Auth):
    def __init__(self, token: str):
        self.token = token

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


@dataclass
class ApiAccess:
    """What an httpx client needs to talk to one Kubernetes API server."""

    server: str
    verify: ssl.SSLContext | bool
    auth: httpx.Auth | None
    namespace: str | None = None  # the kubeconfig context's, when it names one
    source: str = "settings"  # kubeconfig <path> (context <name>), in-cluster, or settings


def _named(entries: Any, name: str, kind: str, where: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(kind)
            if not isinstance(body, dict):
                raise KubeconfigError(f"{where}: {kind} {name!r} has no {kind} mapping")
            return body
    raise KubeconfigError(f"{where}: no {kind} named {name!r} in {kind}s")


def _decode(value: Any, field: str, where: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise KubeconfigError(f"{where}: {field} is not base64") from None


def _path(value: Any, base: Path) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else base / path


def _tls_context(cluster: dict[str, Any], user: dict[str, Any], base: Path, where: str,
                 ca_override: str = "") -> ssl.SSLContext | bool:
    """An SSL context with the cluster's CA (or `ca_override`, or the system's) and the
    user's client certificate; False when the cluster says insecure-skip-tls-verify and
    gives no CA."""
    ca_data = None if ca_override else cluster.get("certificate-authority-data")
    ca_file = ca_override or cluster.get("certificate-authority")
    if cluster.get("insecure-skip-tls-verify") and not (ca_data or ca_file):
        if user.get("client-certificate-data") or user.get("client-certificate"):
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            return False
    elif ca_data:
        try:
            ctx = ssl.create_default_context(cadata=_decode(ca_data, "certificate-authority-data", where).decode())
        except (ssl.SSLError, UnicodeDecodeError) as exc:
            raise KubeconfigError(f"{where}: certificate-authority-data is not a PEM certificate: {exc}") from None
    elif ca_file:
        path = _path(ca_file, base)
        if not path.is_file():
            raise KubeconfigError(f"{where}: certificate-authority: no file at {path}")
        ctx = ssl.create_default_context(cafile=str(path))
    else:
        ctx = ssl.create_default_context()
    _load_client_cert(ctx, user, base, where)
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, user: dict[str, Any], base: Path, where: str) -> None:
    cert_data, key_data = user.get("client-certificate-data"), user.get("client-key-data")
    cert_file, key_file = user.get("client-certificate"), user.get("client-key")
    if not (cert_data or cert_file or key_data or key_file):
        return
    if not (cert_data or cert_file) or not (key_data or key_file):
        raise KubeconfigError(f"{where}: a client certificate needs both client-certificate(-data) and "
                              "client-key(-data)")
    # ssl loads a chain from files only: data fields go through private temporary files,
    # removed as soon as they are loaded.
    with tempfile.TemporaryDirectory(prefix="lookout-kube-") as tmp:
        cert = _path(cert_file, base) if cert_file else Path(tmp) / "client.crt"
        key = _path(key_file, base) if key_file else Path(tmp) / "client.key"
        if cert_data:
            cert.write_bytes(_decode(cert_data, "client-certificate-data", where))
        if key_data:
            key.touch(mode=0o600)
            key.write_bytes(_decode(key_data, "client-key-data", where))
        for path, field in ((cert, "client-certificate"), (key, "client-key")):
            if not path.is_file():
                raise KubeconfigError(f"{where}: {field}: no file at {path}")
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except ssl.SSLError as exc:
            raise KubeconfigError(f"{where}: the client certificate and key do not load: {exc}") from None


def _user_auth(user: dict[str, Any], base: Path, where: str) -> httpx.Auth | None:
    for plugin in ("exec", "auth-provider"):
        if user.get(plugin):
            raise KubeconfigError(
                f"{where}: the user authenticates with an {plugin} plugin, which this launcher does not run; "
                "give it a token (a service-account token or tokenFile) or a client certificate")
    if user.get("token"):
        return StaticToken(str(user["token"]))
    if user.get("tokenFile"):
        path = _path(user["tokenFile"], base)
        if not path.is_file():
            raise KubeconfigError(f"{where}: tokenFile: no file at {path}")
        return TokenFile(path)
    if user.get("username") is not None and user.get("password") is not None:
        return httpx.BasicAuth(str(user["username"]), str(user["password"]))
    return None


def from_kubeconfig(path: Path, context: str = "", ca_override: str = "") -> ApiAccess:
    """The API server and credentials of `context` (default: current-context) in the file;
    `ca_override` (LOOKOUT_RETRAIN_K8S_CA_CERT) replaces the cluster's CA."""
    if not path.is_file():
        raise KubeconfigError(f"LOOKOUT_RETRAIN_K8S_KUBECONFIG: no file at {path}")
    if path.stat().st_size > MAX_KUBECONFIG_BYTES:
        raise KubeconfigError(f"{path}: larger than {MAX_KUBECONFIG_BYTES} bytes, not a kubeconfig")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path}: not YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{path}: not a kubeconfig (expected a mapping with contexts, clusters, users)")
    name = context or doc.get("current-context") or ""
    if not name:
        raise KubeconfigError(f"{path}: no current-context; set LOOKOUT_RETRAIN_K8S_CONTEXT to one of its contexts")
    where = f"{path} (context {name!r})"
    ctx = _named(doc.get("contexts"), name, "context", str(path))
    cluster = _named(doc.get("clusters"), str(ctx.get("cluster", "")), "cluster", where)
    user = _named(doc.get("users"), str(ctx.get("user", "")), "user", where) if ctx.get("user") else {}
    server = str(cluster.get("server") or "")
    if not server.startswith(("https://", "http://")):
        raise KubeconfigError(f"{where}: the cluster's server must be an http(s) URL, got {server!r}")
    base = path.parent
    verify = _tls_context(cluster, user, base, where, ca_override) if server.startswith("https://") else True
    namespace = ctx.get("namespace")
    return ApiAccess(server=server.rstrip("/"), verify=verify, auth=_user_auth(user, base, where),
                     namespace=str(namespace) if namespace else None, source=f"kubeconfig {where}")


def in_cluster(sa: Path = SERVICE_ACCOUNT) -> ApiAccess:
    """The pod's service account (or nothing of it, outside a pod)."""
    token, ca = sa / "token", sa / "ca.crt"
    namespace = (sa / "namespace").read_text().strip() if (sa / "namespace").is_file() else ""
    return ApiAccess(server=IN_CLUSTER_API, verify=ssl.create_default_context(cafile=str(ca)) if ca.is_file() else True,
                     auth=TokenFile(token) if token.is_file() else None, namespace=namespace or None,
                     source="in-cluster service account" if token.is_file() else "settings")


def api_access(settings: RetrainSettings, sa: Path = SERVICE_ACCOUNT) -> ApiAccess:
    """The launcher's API access: kubeconfig or service account, then the explicit settings over it."""
    if settings.retrain_k8s_kubeconfig:
        access = from_kubeconfig(Path(os.path.expanduser(settings.retrain_k8s_kubeconfig)),
                                 settings.retrain_k8s_context, settings.retrain_k8s_ca_cert or "")
    else:
        access = in_cluster(sa)
        if settings.retrain_k8s_ca_cert:
            access.verify = ssl.create_default_context(cafile=settings.retrain_k8s_ca_cert)
    if settings.retrain_k8s_api:
        access.server = settings.retrain_k8s_api.rstrip("/")
    if settings.retrain_k8s_token:
        access.auth = StaticToken(settings.retrain_k8s_token)
    elif settings.retrain_k8s_token_file:
        path = Path(settings.retrain_k8s_token_file)
        if not path.is_file():
            raise ValueError(f"LOOKOUT_RETRAIN_K8S_TOKEN_FILE: no file at {path}")
        access.auth = TokenFile(path)
    return access
