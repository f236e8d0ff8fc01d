"""Settings of the sink (every topic into ClickHouse)."""

from __future__ import annotations

from pydantic import Field

from lookout.core.settings import CommonSettings, ServerSettings


class SinkSettings(CommonSettings, ServerSettings):
    sink_group: str = Field("lookout-sink", description="Consumer group of the sink.")
    sink_batch_rows: int = Field(5000, ge=1, description="Sink inserts when a batch reaches this many rows...")
    # Short: a batch is fetched whole when the sink is behind (up to sink_batch_rows at once),
    # so the linger only decides how long a row waits while the sink keeps up.
    sink_batch_ms: int = Field(200, ge=10, description="...or when the oldest row waited this long.")
    sink_prefetch: bool = Field(
        True, description="Fetch the next batch from Kafka while this one is inserted (off: one after the other).")
    sink_sql_rows: bool = Field(
        True, description="ClickHouse parses llm.events batches itself (one INSERT ... SELECT over their JSON; a batch "
        "it refuses is validated in Python). Off: every batch is validated in Python (slower; for comparison).",
    )
