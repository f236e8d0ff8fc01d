"""The Helm chart (deploy/helm/lookout), rendered as `helm install` would (helm's own loader,
values schema, linter and template engine, in scripts/helm-check) and every object validated
against the Kubernetes 1.31 JSON schemas with kubeconform, strictly: an unknown field or a
kind without a schema fails. No cluster and no network: the schemas come from the
kubernetes-validate package (requirements-dev.txt)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import go_checkers
from tests.test_compose import settings_class

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "lookout"
KUBE = "1.31.0"
# `make test` builds scripts/helm-check before pytest; run alone on a fresh machine, the first
# test builds it: 2 min 43 s of two cores with the modules downloaded, over pytest's default 300 s
# a test on a slow CI host with them not.
pytestmark = pytest.mark.timeout(1500)

REQUIRED = ["kafka.bootstrap=kafka.kafka.svc:9092", "clickhouse.dsnSecret.name=lookout-clickhouse",
            "secrets.name=lookout-secrets"]


@pytest.fixture(scope="module")
def helm_check() -> Path:
    return go_checkers.built("helm-check")


@pytest.fixture(scope="module")
def schemas() -> Path:
    """kubernetes-validate's schemas, laid out as kubeconform reads them; their references
    to the shared definitions point at the local file instead of kubernetes.io."""
    import kubernetes_validate

    src = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{KUBE}-local-strict"
    root = ROOT / ".cache" / "kube-schemas"
    out = root / f"v{KUBE}-standalone-strict"
    if not (out / "deployment-apps-v1.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        definitions = (out / "_definitions.json").as_uri()
        for f in src.glob("*.json"):
            (out / f.name).write_text(f.read_text().replace('"/api/_definitions.json#', f'"{definitions}#'))
    return root


def render(helm_check: Path, schemas: Path, *sets: str, json_sets: tuple[str, ...] = ()) -> tuple[int, dict]:
    args = [str(helm_check), "-schemas", str(schemas), "-kube-version", KUBE]
    for s in sets:
        args += ["-set", s]
    for s in json_sets:
        args += ["-set-json", s]
    done = subprocess.run([*args, str(CHART)], capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout)


def _env(obj: dict) -> dict[str, dict]:
    return {e["name"]: e for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_every_object_of_the_chart_is_valid_kubernetes_and_lint_clean(helm_check, schemas):
    rc, report = render(helm_check, schemas, *REQUIRED, "kubernetesLauncher.enabled=true")
    assert rc == 0, report
    assert not [m for m in report["lint"] if m["severity"] == "error"]
    kinds = sorted({(o["kind"], o["name"]) for o in report["objects"]})
    services = ["alerts", "drift", "feedback", "ingest", "judge", "retrain-trigger", "sink"]
    assert [n for k, n in kinds if k == "Deployment"] == [f"lookout-{s}" for s in services]
    assert [n for k, n in kinds if k == "Service"] == [f"lookout-{s}" for s in services]
    assert {"ServiceAccount", "Role", "RoleBinding", "PodDisruptionBudget"} <= {k for k, _ in kinds}
    assert all(o["status"] == "valid" for o in report["objects"])


def test_a_field_kubernetes_does_not_know_fails_validation(helm_check, schemas):
    rc, report = render(helm_check, schemas, *REQUIRED,
                        json_sets=('services.ingest.resources={"requests":{"cpu":"1"},"limitz":{"memory":"1Gi"}}',))
    assert rc == 1
    bad = [o for o in report["objects"] if o["status"] != "valid"]
    assert [(o["kind"], o["name"]) for o in bad] == [("Deployment", "lookout-ingest")]
    assert bad[0]["status"] == "invalid" and bad[0]["errors"]  # kubeconform says where: under /spec


def test_the_chart_refuses_values_its_schema_forbids(helm_check, schemas):
    rc, report = render(helm_check, schemas, *REQUIRED, "kafka.securityProtocol=TLS")
    assert rc == 1 and "securityProtocol" in (report["error"] + json.dumps(report["lint"]))


def test_every_lookout_variable_is_a_setting_the_service_reads_and_secrets_come_from_secrets(helm_check, schemas):
    _, report = render(helm_check, schemas, *REQUIRED, "kubernetesLauncher.enabled=true")
    for obj in (o["object"] for o in report["objects"] if o["kind"] == "Deployment"):
        module = obj["spec"]["template"]["spec"]["containers"][0]["command"][2]
        known = {f"LOOKOUT_{name.upper()}" for name in settings_class(module).model_fields}
        env = _env(obj)
        unknown = sorted(n for n in env if n.startswith("LOOKOUT_") and n not in known)
        assert not unknown, f"{module} does not read {unknown}"
        for name in ("LOOKOUT_CLICKHOUSE_DSN", "LOOKOUT_PII_SECRET", "LOOKOUT_REVIEW_SIGNING_SECRET"):
            if name in env:
                assert "valueFrom" in env[name] and "value" not in env[name], f"{name} must come from a Secret"
