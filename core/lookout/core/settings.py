"""Settings shared by every service. Each service has one settings object that extends
CommonSettings; every field is read from a `LOOKOUT_<FIELD>` environment variable.

The README's settings table is generated from these classes (`python -m lookout.core.settings`),
so a field documented there is a field the code reads.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKOUT_", extra="ignore")

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    kafka_idempotence: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Idempotent producer. auto: on, unless the broker rejects InitProducerId (Tansu), "
        "where event-id dedup in storage carries exactly-once.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: str | None = Field(default=None, description="SASL password.")
    kafka_ssl_cafile: str | None = Field(
        default=None, description="CA bundle (PEM) that signed the brokers' certificates."
    )
    kafka_ssl_certfile: str | None = Field(default=None, description="Client certificate (PEM) for mutual TLS.")
    kafka_ssl_keyfile: str | None = Field(default=None, description="Client key (PEM) for mutual TLS.")
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix for every topic name (several Lookout installs on one cluster; tests).",
    )
    kafka_session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        description="Consumer group session timeout (heartbeats every third of it). Tansu makes a "
        "joining member wait about half of it.",
    )
    kafka_topic_partitions: int = Field(default=6, ge=1, description="Partitions for topics Lookout creates.")
    kafka_topic_replication: int = Field(default=1, ge=1, description="Replication factor for topics Lookout creates.")

    clickhouse_dsn: str = Field(
        default="chdb://.lookout/chdb",
        description="chdb:///path for embedded ClickHouse, or http(s)://user:pass@host:port for a server.",
    )
    clickhouse_database: str = Field(
        default="lookout", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="ClickHouse database."
    )
    clickhouse_ca_cert: str | None = Field(
        default=None, description="CA bundle for https ClickHouse ('certifi' for the public roots)."
    )
    clickhouse_verify: bool = Field(default=True, description="Verify the ClickHouse server certificate over https.")
    retention_days: int = Field(default=90, ge=1, description="TTL in days for stored rows (applied by migrations).")

    max_request_body_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="Largest request body of every HTTP route without a limit of its own (ingest's /v1/events and "
        "/v1/traces take LOOKOUT_MAX_BODY_BYTES); larger ones get 413 before authentication or parsing.",
    )

    log_level: str = Field(default="INFO", description="Python log level.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text, or json: one JSON object per line (ts, level, logger, "
        "message, and event_id, app_id, stream, run_id... where they apply).")


class ServerSettings(BaseSettings):
    """The HTTP address of a service that serves (mixed into its settings class:
    `class DriftSettings(CommonSettings, ServerSettings)`); run_service listens there."""

    model_config = SettingsConfigDict(env_prefix="LOOKOUT_", extra="ignore")

    http_host: str = Field(default="0.0.0.0", description="Address the service's HTTP API listens on.")
    http_port: int = Field(default=8080, ge=1, le=65535, description="Port the service's HTTP API listens on.")
