"""The `docker` test group's servers, started through testcontainers where a Docker engine
runs (a laptop, a CI with Docker): a ClickHouse server, Apache Kafka (Confluent's image of
it, which testcontainers' KafkaContainer drives in KRaft mode) and Grafana with the
ClickHouse plugin and our provisioning, the three as compose.yaml runs them, on one Docker
network so Grafana reaches ClickHouse by name.

Without an engine the whole group skips with one reason (plugin.py); everything else keeps
running on the Kafka jars and chdb. This module is not exercised on the development machine
(no Docker there): see the README's "Tests against servers in containers".

Images are pinned to compose.yaml's ClickHouse and Grafana; LOOKOUT_TEST_*_IMAGE override.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
CLICKHOUSE_IMAGE = os.environ.get("LOOKOUT_TEST_CLICKHOUSE_IMAGE", "clickhouse/clickhouse-server:25.8")
KAFKA_IMAGE = os.environ.get("LOOKOUT_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")
GRAFANA_IMAGE = os.environ.get("LOOKOUT_TEST_GRAFANA_IMAGE", "grafana/grafana-oss:11.6.0")
SKIP_REASON = "no Docker engine: testcontainers group skipped"


def docker_problem() -> str | None:
    """None when testcontainers can reach a Docker engine, else why not."""
    try:
        from testcontainers.core.docker_client import DockerClient
    except ImportError:
        return "testcontainers is not installed (pip install './testing[docker]')"
    try:
        DockerClient(timeout=5).client.ping()  # the engine testcontainers itself would use
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


@dataclass
class ClickHouseServer:
    container: Any
    user: str
    password: str
    reader_password: str

    def dsn(self) -> str:
        host = self.container.get_container_host_ip()
        return f"http://{self.user}:{self.password}@{host}:{self.container.get_exposed_port(8123)}"


def start_network() -> Any:
    from testcontainers.core.network import Network

    network = Network()
    network.create()
    return network


def start_clickhouse(network: Any) -> ClickHouseServer:
    """The server as compose.yaml runs it: the services' `lookout` user (access
    management, so tests may create their own databases) and the `grafana` read-only user
    of deploy/clickhouse/users.d/grafana-reader.xml; alias `clickhouse` on the network."""
    from testcontainers.community.clickhouse import ClickHouseContainer

    password, reader = secrets.token_hex(12), secrets.token_hex(12)
    container = (
        ClickHouseContainer(CLICKHOUSE_IMAGE, username="lookout", password=password, dbname="lookout")
        .with_env("CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT", "1")
        .with_env("CLICKHOUSE_READER_PASSWORD", reader)
        .with_volume_mapping(str(ROOT / "deploy/clickhouse/users.d/grafana-reader.xml"),
                             "/etc/clickhouse-server/users.d/grafana-reader.xml", "ro")
        .with_network(network)
        .with_network_aliases("clickhouse")
    )
    container.start()
    return ClickHouseServer(container, "lookout", password, reader)


def start_kafka(network: Any) -> Any:
    from testcontainers.community.kafka import KafkaContainer

    container = KafkaContainer(KAFKA_IMAGE).with_kraft().with_network(network).with_network_aliases("kafka")
    container.start()
    return container


@dataclass
class Grafana:
    container: Any
    password: str

    @property
    def url(self) -> str:
        return f"http://{self.container.get_container_host_ip()}:{self.container.get_exposed_port(3000)}"


def start_grafana(network: Any, clickhouse: ClickHouseServer) -> Grafana:
    """Grafana with the ClickHouse plugin (installed at start: the container needs to reach
    grafana.com) and dashboards/grafana mounted as compose.yaml mounts it."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    password = secrets.token_hex(12)
    container = (
        DockerContainer(GRAFANA_IMAGE)
        .with_env("GF_INSTALL_PLUGINS", "grafana-clickhouse-datasource")
        .with_env("GF_SECURITY_ADMIN_PASSWORD", password)
        .with_env("GF_USERS_ALLOW_SIGN_UP", "false")
        .with_env("CLICKHOUSE_HOST", "clickhouse")
        .with_env("CLICKHOUSE_PORT", "9000")
        .with_env("CLICKHOUSE_PROTOCOL", "native")
        .with_env("CLICKHOUSE_SECURE", "false")
        .with_env("CLICKHOUSE_READER_USER", "grafana")
        .with_env("CLICKHOUSE_READER_PASSWORD", clickhouse.reader_password)
        .with_env("CLICKHOUSE_DATABASE", "lookout")
        .with_volume_mapping(str(ROOT / "dashboards/grafana/provisioning"), "/etc/grafana/provisioning", "ro")
        .with_volume_mapping(str(ROOT / "dashboards/grafana/dashboards"), "/var/lib/grafana/dashboards/lookout", "ro")
        .with_exposed_ports(3000)
        .with_network(network)
        .waiting_for(HttpWaitStrategy(3000, "/api/health").for_status_code(200).with_startup_timeout(240))
    )
    container.start()
    return Grafana(container, password)
