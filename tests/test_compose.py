"""compose.yaml names every part of the production-like stack, buildable and checkable.

Docker's engine does not run here, so this is static: compose-go (the loader behind `docker
compose config`) accepts the file; every service has an image or a Dockerfile that exists,
and a healthcheck; every LOOKOUT_* variable a service sets is a
field of the settings class that service reads (and its value validates); each Dockerfile
installs lookout-core and its own service only; Grafana mounts the generated provisioning.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards import generate
from lookout.core.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
LOOKOUT = {"ingest", "sink", "drift", "judge", "feedback", "retrain-trigger"}
INFRA = {"kafka": "apache/kafka:", "clickhouse": "clickhouse/clickhouse-server:", "grafana": "grafana/grafana-oss:"}
SERVICE_DIRS = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))


def module_of(service: dict) -> str:
    command = service["command"]
    assert command[:2] == ["python", "-m"], command
    return command[2]


def settings_class(module: str) -> type[CommonSettings]:
    """The service's settings: a CommonSettings subclass in lookout.<service>.settings, once
    that service defines one; CommonSettings until then."""
    package = ".".join(module.split(".")[:2])
    try:
        found = importlib.import_module(f"{package}.settings")
    except ModuleNotFoundError:
        return CommonSettings
    classes = [
        c for _, c in inspect.getmembers(found, inspect.isclass)
        if issubclass(c, CommonSettings) and c is not CommonSettings and c.__module__ == found.__name__
    ]
    assert len(classes) <= 1, f"{found.__name__} has several settings classes: {classes}"
    return classes[0] if classes else CommonSettings


def lookout_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping, so anchors merge"
    return {k: str(v) for k, v in env.items() if k.startswith("LOOKOUT_")}


def test_the_stack_has_kafka_clickhouse_grafana_and_every_service():
    assert set(SERVICES) == set(INFRA) | LOOKOUT
    for name, prefix in INFRA.items():
        assert SERVICES[name]["image"].startswith(prefix), name
    # Every service package in the repo runs in compose (the sink shares ingest's image).
    assert {Path(SERVICES[s]["build"]["dockerfile"]).parent.name for s in LOOKOUT} == set(SERVICE_DIRS)


def test_kafka_runs_in_kraft_mode_without_zookeeper():
    env = SERVICES["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_an_image_or_a_buildable_dockerfile_and_a_healthcheck(name):
    service = SERVICES[name]
    assert "image" in service or "build" in service
    if "build" in service:
        build = service["build"]
        assert build["context"] == ".", "the repository root: Dockerfiles copy core/ and services/<name>/"
        assert (ROOT / build["dockerfile"]).is_file(), build["dockerfile"]
    check = service["healthcheck"]
    assert check["test"] and check["test"][0] in ("CMD", "CMD-SHELL")
    assert service.get("restart") == "unless-stopped"
    for dep in service.get("depends_on") or {}:
        assert dep in SERVICES, dep


@pytest.mark.parametrize("name", sorted(LOOKOUT))
def test_lookout_service_checks_healthz_on_8080(name):
    test = " ".join(SERVICES[name]["healthcheck"]["test"])
    assert "http://127.0.0.1:8080/healthz" in test
    env = lookout_env(SERVICES[name])
    if "LOOKOUT_HTTP_PORT" in env:
        assert env["LOOKOUT_HTTP_PORT"] == "8080"


@pytest.mark.parametrize("name", sorted(LOOKOUT))
def test_every_lookout_variable_is_a_setting_the_service_reads(name):
    service = SERVICES[name]
    cls = settings_class(module_of(service))
    env = lookout_env(service)
    assert {"LOOKOUT_KAFKA_BOOTSTRAP", "LOOKOUT_CLICKHOUSE_DSN", "LOOKOUT_CLICKHOUSE_DATABASE"} <= set(env)
    fields = {f"LOOKOUT_{f.upper()}" for f in cls.model_fields}
    assert set(env) <= fields, f"{cls.__name__} has no field for {sorted(set(env) - fields)}"
    # Values that compose does not interpolate must validate as they are.
    literal = {k[len("LOOKOUT_"):].lower(): v for k, v in env.items() if "${" not in v}
    cls.model_validate(literal)
    assert env["LOOKOUT_CLICKHOUSE_DSN"].startswith("http://") and "@clickhouse:8123" in env["LOOKOUT_CLICKHOUSE_DSN"]
    assert env["LOOKOUT_KAFKA_BOOTSTRAP"] == "kafka:9092"


@pytest.mark.parametrize("name", sorted(LOOKOUT))
def test_dockerfile_builds_a_slim_image_of_core_and_that_service_only(name):
    service = SERVICES[name]
    dockerfile = (ROOT / service["build"]["dockerfile"]).read_text()
    service_dir = Path(service["build"]["dockerfile"]).parent.as_posix()
    assert re.findall(r"^FROM (\S+)", dockerfile, re.M) == ["python:3.11-slim"] * len(
        re.findall(r"^FROM ", dockerfile, re.M)
    )
    copied = re.findall(r"^COPY (\S+) ", dockerfile, re.M)
    assert copied == ["core/", f"{service_dir}/"], copied
    dist = "lookout-" + Path(service_dir).name
    assert f"pip install --no-index --find-links /wheels {dist}" in dockerfile
    assert "USER lookout" in dockerfile
    cmd = re.search(r"^CMD (\[.*\])", dockerfile, re.M).group(1)
    assert yaml.safe_load(cmd)[2] == ".".join(module_of(service).split(".")[:2])


def test_grafana_gets_the_plugin_and_the_generated_provisioning():
    grafana = SERVICES["grafana"]
    env = grafana["environment"]
    assert "grafana-clickhouse-datasource" in env["GF_INSTALL_PLUGINS"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == generate.ROOT / "provisioning"
    provider = yaml.safe_load((generate.ROOT / generate.PROVIDER_FILE).read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert (ROOT / mounts[dashboards_path]).resolve() == generate.ROOT / "dashboards"
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith(dashboards_path + "/")
    # Every ${VAR} the datasource file reads is set on the container.
    datasource = (generate.ROOT / generate.DATASOURCE_FILE).read_text()
    assert set(re.findall(r"\$\{(\w+)\}", datasource)) <= set(env)
    assert env["CLICKHOUSE_PASSWORD"] == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"]


def test_named_volumes_are_declared():
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0]
            if not source.startswith("."):
                assert source in declared, (name, source)


# --- The real loader: compose-go, the library behind `docker compose config` ---------------
# Built from scripts/compose-check with the Go toolchain (modules from the Go proxy), so the
# file is checked by the same schema validation, interpolation and consistency rules that
# `docker compose up` applies, not only by a YAML parse.

REQUIRED_SECRETS = {
    "LOOKOUT_FEEDBACK_TOKEN_SECRET": "t" * 32,
    "LOOKOUT_REVIEW_ADMIN_PASSWORD": "a-strong-password",
    "LOOKOUT_PII_SECRET": "p" * 32,
    "LOOKOUT_REVIEW_SIGNING_SECRET": "s" * 32,
}


@pytest.fixture(scope="module")
def compose_check() -> Path:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    binary = ROOT / ".cache" / "compose-check" / "compose-check"
    source = ROOT / "scripts" / "compose-check"
    newest = max(p.stat().st_mtime for p in source.iterdir())
    if not binary.exists() or binary.stat().st_mtime < newest:
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([go, "build", "-o", str(binary), "."], cwd=source, check=True, timeout=600)
    return binary


def load_with_compose_go(binary: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")}
    return subprocess.run([str(binary), str(ROOT / "compose.yaml")], env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_compose_refuses_to_start_without_each_secret_and_names_it(compose_check):
    result = load_with_compose_go(compose_check, {})
    assert result.returncode == 1
    for variable in REQUIRED_SECRETS:
        assert f"required variable {variable} is missing a value" in result.stderr


def test_compose_go_loads_the_stack_with_every_build_healthcheck_and_volume(compose_check):
    result = load_with_compose_go(compose_check, REQUIRED_SECRETS)
    assert result.returncode == 0, result.stderr
    project = json.loads(result.stdout)
    services = project["services"]
    assert set(services) == set(INFRA) | LOOKOUT
    for name in LOOKOUT:
        build = services[name]["build"]
        # Paths as the loader resolves them: the Dockerfile must exist where docker would look.
        assert Path(build["context"]) == ROOT
        assert (Path(build["context"]) / build["dockerfile"]).is_file(), name
        # Every Lookout service waits for healthy infrastructure, not just started containers.
        depends = services[name]["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy", name
        assert depends["clickhouse"]["condition"] == "service_healthy", name
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        for mount in service.get("volumes") or []:
            if mount["type"] == "volume":
                assert mount["source"] in project["volumes"], (name, mount["source"])
            else:
                assert Path(mount["source"]).exists(), (name, mount["source"])
    # Interpolated secrets reach the services that read them.
    assert services["ingest"]["environment"]["LOOKOUT_PII_SECRET"] == REQUIRED_SECRETS["LOOKOUT_PII_SECRET"]
    assert services["feedback"]["environment"]["LOOKOUT_FEEDBACK_TOKEN_SECRET"] == \
        REQUIRED_SECRETS["LOOKOUT_FEEDBACK_TOKEN_SECRET"]
