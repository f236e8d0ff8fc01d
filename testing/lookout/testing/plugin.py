"""Pytest plugin (loaded with `-p lookout.testing.plugin`): real brokers and chdb stores.

- `kafka_broker`, `tansu_broker`: one broker of each kind per test session.
- `broker`: parametrised over both, for tests that must hold on each.
- `settings`: CommonSettings for one test: its own topic prefix (fresh topics) on the
  broker, and its own ClickHouse database in the session's chdb path. chdb lets a process
  open one path only, so tests separate by database; a test that needs its own path runs
  the component in a subprocess.
- `ch`: a client on that database with migrations applied (copied from a migrated
  template database: schema.py).
- `clickhouse_server`, `kafka_container`, `grafana`: the `docker` group's servers, through
  testcontainers (containers.py); without a Docker engine every test marked `docker` skips
  with one reason.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from pathlib import Path

import pytest

from lookout.core.settings import CommonSettings

from . import schema
from .brokers import KafkaBroker, TansuBroker


@pytest.fixture(scope="session")
def kafka_broker():
    broker = KafkaBroker().start()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def tansu_broker():
    broker = TansuBroker().start()
    yield broker
    broker.close()


@pytest.fixture(autouse=True)
def _tansu_alive(request):
    """Before a test on the session's Tansu: if it died, say so with its log and start it again."""
    callspec = getattr(request.node, "callspec", None)
    on_tansu = "tansu_broker" in request.fixturenames or (
        callspec is not None and callspec.params.get("broker") == "tansu")
    if on_tansu:
        tail = request.getfixturevalue("tansu_broker").revive()
        if tail is not None:
            warnings.warn(f"the session's Tansu had died; started it again. Its log ended:\n{tail}", stacklevel=1)


@pytest.fixture(params=["kafka", "tansu"])
def broker(request):
    return request.getfixturevalue(f"{request.param}_broker")


@pytest.fixture(scope="session")
def chdb_path() -> Path:
    # One chdb path per test process (chdb's limit): under pytest-xdist each worker has its own.
    # Removed by the OS tmp reaper.
    chosen = os.environ.get("LOOKOUT_TEST_CHDB")
    if chosen:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        return Path(f"{chosen}-{worker}") if worker else Path(chosen)
    return Path(tempfile.mkdtemp(prefix="lookout-chdb-"))


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ch_settings(chdb_path) -> CommonSettings:
    return CommonSettings(clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database=_unique("t_"))


@pytest.fixture
def ch(ch_settings):
    client = schema.create_migrated(ch_settings)
    yield client
    client.command(f"DROP DATABASE IF EXISTS {ch_settings.clickhouse_database}")


@pytest.fixture
def settings_for(chdb_path):
    """Factory: CommonSettings for a broker, with a fresh topic prefix and database."""

    def make(broker, **extra) -> CommonSettings:
        values = dict(
            kafka_bootstrap=broker.bootstrap,
            kafka_idempotence="on" if broker.supports_idempotence else "off",
            topic_prefix=_unique("t") + ".",
            kafka_topic_partitions=3,
            # Tansu holds a joining member for about half the session timeout.
            kafka_session_timeout_ms=10_000 if broker.supports_idempotence else 4_000,
            clickhouse_dsn=f"chdb://{chdb_path}",
            clickhouse_database=_unique("t_"),
        )
        values.update(extra)
        settings = CommonSettings(**values)
        if settings.clickhouse_dsn == f"chdb://{chdb_path}":
            # Made now, from the template (schema.py): the stack's own migrations find it done.
            schema.create_migrated(settings)
        return settings

    return make


@pytest.fixture
def settings(broker, settings_for) -> CommonSettings:
    return settings_for(broker)


@pytest.fixture
def ingest_stack(settings):
    """Ingest + sink on `broker` (both kinds), fresh topics and database."""
    from .stack import IngestStack, ingest_settings_for

    stack = IngestStack(ingest_settings_for(settings)).start()
    yield stack
    stack.close()


@pytest.fixture
def kafka_ingest_stack(kafka_broker, settings_for):
    """Ingest + sink on Apache Kafka only (tests that stop and restart the broker)."""
    from .stack import IngestStack, ingest_settings_for

    stack = IngestStack(ingest_settings_for(settings_for(kafka_broker))).start()
    yield stack
    stack.close()


# ---- the `docker` group: servers in containers (containers.py) ------------------------------

_docker_problem: list[str | None] = []


def _docker_reason() -> str | None:
    if not _docker_problem:
        from .containers import docker_problem

        _docker_problem.append(docker_problem())
    return _docker_problem[0]


def pytest_collection_modifyitems(config, items):
    """Without a Docker engine every `docker` test skips, all with the one reason."""
    marked = [item for item in items if item.get_closest_marker("docker")]
    if not marked:
        return
    problem = _docker_reason()
    if problem is not None:
        from .containers import SKIP_REASON

        skip = pytest.mark.skip(reason=f"{SKIP_REASON} ({problem})")
        for item in marked:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def docker_network():
    from .containers import start_network

    network = start_network()
    yield network
    network.remove()


@pytest.fixture(scope="session")
def clickhouse_server(docker_network):
    """A ClickHouse server (containers.ClickHouseServer): `dsn()` is its http:// DSN."""
    from .containers import start_clickhouse

    server = start_clickhouse(docker_network)
    yield server
    server.container.stop()


@pytest.fixture(scope="session")
def kafka_container(docker_network):
    """Apache Kafka in a container; `.get_bootstrap_server()` from the host."""
    from .containers import start_kafka

    kafka = start_kafka(docker_network)
    yield kafka
    kafka.stop()


@pytest.fixture(scope="session")
def grafana(docker_network, clickhouse_server):
    """Grafana with the ClickHouse plugin and dashboards/grafana's provisioning."""
    from .containers import start_grafana

    server = start_grafana(docker_network, clickhouse_server)
    yield server
    server.container.stop()
