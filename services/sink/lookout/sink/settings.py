"""Settings of the sink (every topic into ClickHouse)."""

from __future__ import annotations

from pydantic import Field

from lookout.core.settings import CommonSettings, ServerSettings


class SinkSettings(CommonSettings, ServerSettings):
    sink_group: str = Field("lookout-sink", description="Consumer group of the sink.")
    # Each insert has a fixed cost (ClickHouse analysing the fast path's statement and writing a
    # part to every table and view: ~70 ms on one core), so a lagging sink catches up faster in
    # large batches: 20 000 rows a batch stored 1.3-1.9x the rows/s of 5 000 (bench/RESULTS.md).
    sink_batch_rows: int = Field(20000, ge=1, description="Sink inserts when a batch reaches this many rows...")
    sink_batch_bytes: int = Field(
        64 << 20, ge=1 << 20, description="...or this many bytes of records (large answers: a bounded batch)...")
    # A batch is fetched whole when the sink is behind (up to sink_batch_rows at once), so the
    # linger decides how long a row waits while the sink keeps up, and how often it inserts:
    # every insert costs ClickHouse a part in the table and in each view (~30 ms), so at 200 ms
    # the sink used 0.82 of a core at 5 000 events/s and 0.29 at 100/s; at 500 ms 0.58 and
    # 0.14, for ~0.15 s more latency at a trickle (bench/RESULTS.md).
    sink_batch_ms: int = Field(500, ge=10, description="...or when the oldest row waited this long.")
    # Where the sink shares its cores with intake (`lookout up` runs both in one process), its
    # inserts are the work that can wait: at nice 10 a hostile batch of megabyte answers is
    # stored a little later instead of slowing every small request's answer (bench/RESULTS.md).
    sink_insert_nice: int = Field(
        0, ge=0, le=19, description="Nice value of ClickHouse's threads while they store a batch (its "
        "os_thread_priority; ClickHouse ignores it without CAP_SYS_NICE). `lookout up` uses 10 unless set.")
    sink_prefetch: bool = Field(
        True, description="Fetch the next batch from Kafka while this one is inserted (off: one after the other).")
    # Measured on one core (bench/RESULTS.md): 1 record 70 ms the SQL way against 33 validating,
    # 100: 72 / 44, 1 000: 93 / 88, 3 000: 144 / 183. A steady trickle makes small batches,
    # and at the SQL way's fixed cost 100 events/s kept half a core busy.
    sink_sql_min_records: int = Field(
        1000, ge=0, description="A batch with fewer llm.events records than this is validated in Python instead "
        "of parsed by ClickHouse: the SQL statement's analysis costs ~35 ms whatever its size (0: always SQL).")
    sink_sql_rows: bool = Field(
        True, description="ClickHouse parses llm.events batches itself (one INSERT ... SELECT over their JSON; a batch "
        "it refuses is validated in Python). Off: every batch is validated in Python (slower; for comparison).",
    )
