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
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from lookout.core.settings import CommonSettings
from lookout.dashboards import generate
from tests import go_checkers

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
LOOKOUT = {"ingest", "sink", "drift", "judge", "feedback", "retrain-trigger", "alerts"}
INFRA = {"kafka": "apache/kafka:", "clickhouse": "clickhouse/clickhouse-server:", "grafana": "grafana/grafana-oss:"}
READER_XML = ROOT / "deploy" / "clickhouse" / "users.d" / "grafana-reader.xml"
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
    # The alert evaluator reads the rules from the dashboards package, its one other part.
    extra = ["dashboards/"] if name == "alerts" else []
    assert copied == ["core/", *extra, f"{service_dir}/"], copied
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


def test_grafana_reads_clickhouse_as_the_read_only_user_not_as_the_services():
    grafana, clickhouse = SERVICES["grafana"], SERVICES["clickhouse"]
    ds = yaml.safe_load((generate.ROOT / generate.DATASOURCE_FILE).read_text())["datasources"][0]
    user_var = re.fullmatch(r"\$\{(\w+)\}", ds["jsonData"]["username"]).group(1)
    password_var = re.fullmatch(r"\$\{(\w+)\}", ds["secureJsonData"]["password"]).group(1)
    reader = grafana["environment"][user_var]
    services_user = clickhouse["environment"]["CLICKHOUSE_USER"]
    assert reader != services_user
    for name in LOOKOUT:
        dsn = lookout_env(SERVICES[name])["LOOKOUT_CLICKHOUSE_DSN"]
        assert dsn.startswith(f"http://{services_user}:"), (name, dsn)
    # The reader is the user the mounted users.d file defines, with the password both
    # containers take from the same required variable.
    mounts = {m.split(":")[1]: m.split(":")[0] for m in clickhouse["volumes"]}
    assert (ROOT / mounts[f"/etc/clickhouse-server/users.d/{READER_XML.name}"]).resolve() == READER_XML
    (user,) = ET.parse(READER_XML).getroot().findall("users/*")
    assert user.tag == reader
    password = user.find("password")
    assert password.get("from_env") == password_var and not (password.text or "").strip()
    assert grafana["environment"][password_var] == clickhouse["environment"][password_var]
    assert grafana["environment"][password_var].startswith("${" + password_var + ":?")


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
    "GRAFANA_ADMIN_PASSWORD": "another-strong-password",
    "CLICKHOUSE_READER_PASSWORD": "r" * 32,
    "LOOKOUT_REVIEW_SIGNING_SECRET": "s" * 32,
}


@pytest.fixture(scope="module")
def compose_check() -> Path:
    return go_checkers.built("compose-check")


def load_with_compose_go(binary: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED_SECRETS and not k.startswith("LOOKOUT_")}
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


@pytest.mark.parametrize("missing", ["GRAFANA_ADMIN_PASSWORD", "CLICKHOUSE_READER_PASSWORD"])
def test_compose_refuses_to_start_grafana_without_its_secret(compose_check, missing):
    # No default admin/admin on a published port, and no known password for the reader.
    result = load_with_compose_go(compose_check, {k: v for k, v in REQUIRED_SECRETS.items() if k != missing})
    assert result.returncode == 1
    assert f"required variable {missing} is missing a value" in result.stderr
    assert [v for v in REQUIRED_SECRETS if f"variable {v} " in result.stderr] == [missing]


def test_compose_go_gives_grafana_its_own_password_and_the_read_only_clickhouse_user(compose_check):
    result = load_with_compose_go(compose_check, REQUIRED_SECRETS)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == REQUIRED_SECRETS["GRAFANA_ADMIN_PASSWORD"]
    assert grafana["CLICKHOUSE_READER_PASSWORD"] == REQUIRED_SECRETS["CLICKHOUSE_READER_PASSWORD"]
    assert services["clickhouse"]["environment"]["CLICKHOUSE_READER_PASSWORD"] == \
        REQUIRED_SECRETS["CLICKHOUSE_READER_PASSWORD"]
    services_user = services["clickhouse"]["environment"]["CLICKHOUSE_USER"]
    assert grafana["CLICKHOUSE_READER_USER"] == "grafana" != services_user
    assert "CLICKHOUSE_USER" not in grafana and "CLICKHOUSE_PASSWORD" not in grafana
    mounted = {m["target"]: Path(m["source"]) for m in services["clickhouse"]["volumes"] if m["type"] == "bind"}
    assert mounted[f"/etc/clickhouse-server/users.d/{READER_XML.name}"] == READER_XML


# --- The reader's grants, for real: the same users.d definition loaded into chdb -----------
# chdb cannot log in as another user, so a chdb process is started whose only user (the one
# chdb runs as) carries the reader's profile and grants, taken from the file the server
# mounts. Two things differ, both because chdb is not a server: no password (chdb has no
# login), and no changeable_in_readonly on max_execution_time (chdb's embedded server does
# not read access_control_improvements; the server image's config.xml enables the flag that
# constraint needs). Everything else is checked by ClickHouse's own access control.

_WRITER = """
import sys
from datetime import datetime
from lookout.core import clickhouse, migrations
from lookout.core.settings import CommonSettings
from lookout.testing import sample
settings = CommonSettings(clickhouse_dsn="chdb://" + sys.argv[1], clickhouse_database="lookout")
client = clickhouse.connect(settings)
migrations.apply(client, settings.retention_days)
sample.seed(client, datetime.fromisoformat(sys.argv[2]))
client.command("CREATE DATABASE IF NOT EXISTS other")
client.command("CREATE TABLE other.secret (x UInt8) ENGINE = MergeTree ORDER BY x")
"""

_READER = """
import json, sys
from chdb import session
db = session.Session(sys.argv[1] + "?--config-file=" + sys.argv[2] + "&database=lookout")
out = []
for sql in json.load(open(sys.argv[3])):
    try:
        data = json.loads(db.query(sql, "JSONCompact").bytes() or b'{"data": []}')["data"]
        out.append({"rows": len(data), "first": data[0] if data else None, "error": None})
    except Exception as exc:
        out.append({"rows": None, "first": None, "error": str(exc)})
print(json.dumps(out))
"""


def _reader_config(folder: Path) -> Path:
    """A chdb config whose `default` user is the server's `grafana` user, as described above."""
    folder.mkdir()
    source = ET.parse(READER_XML).getroot()
    (user,) = source.findall("users/*")
    user.tag = "default"
    user.remove(user.find("password"))
    ET.SubElement(user, "password")
    for constraint in source.iter("constraints"):
        for setting in constraint:
            for flag in setting.findall("changeable_in_readonly"):
                setting.remove(flag)
    profiles = source.find("profiles")
    ET.SubElement(profiles, "default")
    users_xml = ET.Element("clickhouse")
    users_xml.append(profiles)
    ET.SubElement(ET.SubElement(users_xml, "quotas"), "default")
    ET.SubElement(users_xml, "users").append(user)
    ET.ElementTree(users_xml).write(folder / "users.xml")
    config = folder / "config.xml"
    config.write_text(f"<clickhouse><users_config>{folder / 'users.xml'}</users_config></clickhouse>")
    return config


def test_reader_profile_needs_only_max_execution_time_changeable():
    profile = ET.parse(READER_XML).getroot().find("profiles/lookout_reader")
    assert profile.findtext("readonly") == "1"
    (constraint,) = profile.find("constraints")
    assert constraint.tag == "max_execution_time"
    assert constraint.find("changeable_in_readonly") is not None
    assert int(constraint.findtext("max")) <= 300


@pytest.fixture(scope="module")
def reader_db(tmp_path_factory):
    """A chdb database with the schema and the dashboards' sample, and a config to read it
    as Grafana's user; `run(statements)` answers each with its row count or its error."""
    from datetime import UTC, datetime

    folder = tmp_path_factory.mktemp("reader")
    path = folder / "chdb"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")}
    python = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else "python"
    subprocess.run([python, "-c", _WRITER, str(path), now.isoformat()], env=env, cwd=ROOT, check=True, timeout=300)
    config = _reader_config(folder / "config")
    cwd = folder / "cwd"  # not the config's folder: clickhouse-local reads a config.xml it finds in its cwd
    cwd.mkdir()

    def run(statements: list[str]) -> list[dict]:
        listing = folder / "statements.json"
        listing.write_text(json.dumps(statements))
        done = subprocess.run([python, "-c", _READER, str(path), str(config), str(listing)], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return now, run


REFUSED = {
    "insert": "INSERT INTO llm_calls (event_id, ts, app_id, model) VALUES (generateUUIDv4(), now(), 'x', 'm')",
    "alter delete": "ALTER TABLE llm_calls DELETE WHERE 1",
    "alter add column": "ALTER TABLE scores ADD COLUMN pwned UInt8",
    "drop": "DROP TABLE feedback",
    "truncate": "TRUNCATE TABLE calls_1m",
    "create": "CREATE TABLE pwned (x UInt8) ENGINE = Memory",
    "create temporary": "CREATE TEMPORARY TABLE pwned (x UInt8)",
    "optimize": "OPTIMIZE TABLE llm_calls FINAL",
    "system": "SYSTEM STOP MERGES llm_calls",
    "set readonly": "SELECT 1 SETTINGS readonly = 0",
    "raise a limit": "SELECT 1 SETTINGS max_memory_usage = 100000000000",
    "another database": "SELECT count() FROM other.secret",
    "api key hashes": "SELECT count() FROM api_keys",
    "password hashes": "SELECT count() FROM reviewers",
    "session hashes": "SELECT count() FROM review_sessions",
    "users": "SELECT count() FROM system.users",
    "read a file": "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "write a file": "INSERT INTO FUNCTION file('pwned.csv', 'CSV', 'x UInt8') SELECT 1",
    "fetch a url": "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
}


def test_grafanas_clickhouse_user_reads_lookout_and_cannot_write_or_read_credentials(reader_db):
    _, run = reader_db
    count = "SELECT count() FROM llm_calls"
    results = run([count, *REFUSED.values(), count])
    before, *refused, after = results
    assert before["error"] is None and before["first"][0] > 1000
    assert after == before
    for (what, sql), result in zip(REFUSED.items(), refused, strict=True):
        assert result["error"], f"{what} was allowed: {sql}"
        assert re.search(r"ACCESS_DENIED|READONLY|readonly mode|Not enough privileges", result["error"]), (
            what, result["error"][:300])


def test_every_panel_variable_and_alert_query_runs_as_grafanas_user(reader_db):
    from datetime import timedelta

    from lookout.dashboards import alerts, macros, panels
    from lookout.dashboards.settings import DashboardSettings

    now, run = reader_db
    variables = {"app": macros.ALL, "model": macros.ALL, "environment": macros.ALL, "daily_budget": 100.0}
    ctx = macros.QueryContext(now - timedelta(hours=2), now, 60, variables)
    some = macros.QueryContext(now - timedelta(hours=2), now, 60, {
        **variables, "app": ["support-bot"], "model": ["gpt-4o-mini"], "environment": ["prod"]})
    named = [(f"panel {p.id}", macros.expand(p.sql, c)) for p in panels.PANELS for c in (ctx, some)]
    named += [(f"variable {v.name}", macros.expand(v.sql, some)) for v in panels.VARIABLES if v.sql]
    settings = DashboardSettings(_env_file=None)
    named += [(f"alert {r.uid}", macros.expand(r.render_sql(settings), macros.QueryContext(
        now - timedelta(seconds=r.window_s), now, 60))) for r in alerts.RULES]
    results = run([sql for _, sql in named])
    for (what, _), result in zip(named, results, strict=True):
        assert result["error"] is None, (what, result["error"][:300])
    answered = {what.split()[1] for (what, _), r in zip(named, results, strict=True) if what.startswith("panel")
                and r["rows"]}
    assert answered == {p.id for p in panels.PANELS}  # the reader sees the sample's rows
