"""The sink: every topic into ClickHouse, in batches, offsets committed only after the
insert. Replays collapse: rows whose (app_id, id) is already stored are skipped (two apps may
pick the same id; each keeps its row) and tables are ReplacingMergeTree.
A record that cannot be parsed or stored goes to llm.dlq with the error; the rest of its
batch is stored and the sink keeps going. Score and vote records that do not name their
call's model_version (reviewer votes, producers that never saw the call) get it from the
stored call, so the per-version rollup files them under the right version.

Run alone with `python -m lookout.ingest.sink`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, ConsumerRecord
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError
from prometheus_client import Counter

from lookout.core import clickhouse, ids, kafka, migrations, topics
from lookout.core.events import TOPIC_SCHEMAS, DeadLetter

from .rows import TABLES, TableSpec
from .settings import IngestSettings

log = logging.getLogger(__name__)

STORED = Counter("lookout_sink_rows_stored_total", "Rows inserted into ClickHouse", ["table"])
SKIPPED = Counter("lookout_sink_replays_skipped_total", "Records whose id was already stored", ["table"])
DEAD = Counter("lookout_sink_dead_letters_total", "Records sent to the dead-letter topic", ["topic"])
LOST_DLQ = Counter("lookout_sink_unreadable_dead_letters_total", "Unparseable records on llm.dlq itself")


@dataclass
class _Pending:
    spec: TableSpec
    rows: list[dict] = field(default_factory=list)
    records: list[ConsumerRecord] = field(default_factory=list)


class Sink:
    def __init__(self, settings: IngestSettings, client: Client, producer: AIOKafkaProducer):
        self.settings = settings
        self.client = client
        self.producer = producer
        self.dlq_topic = topics.resolve(settings.topic_prefix, topics.DLQ)

    async def handle(self, records: list[ConsumerRecord]) -> None:
        # Parsing and validating thousands of records is CPU work: off the event loop, which
        # serves HTTP in the same process (`lookout up`, ingest's health checks).
        pending, dead = await asyncio.to_thread(self._parse, records)
        for slot in pending.values():
            await asyncio.to_thread(self._store, slot, dead)
        if dead:
            send = self.producer.send
            futures = [await send(self.dlq_topic, d.to_bytes(), key=d.source_topic.encode()) for d in dead]
            await asyncio.gather(*futures)

    def _parse(self, records: list[ConsumerRecord]) -> tuple[dict[str, _Pending], list[DeadLetter]]:
        pending: dict[str, _Pending] = {}
        dead: list[DeadLetter] = []
        for record in records:
            base = topics.base_name(self.settings.topic_prefix, record.topic)
            try:
                message = TOPIC_SCHEMAS[base].from_bytes(record.value)
                spec = TABLES[base]
                row = spec.to_row(message)
            except Exception as exc:
                self._dead_letter(record, exc, dead)
                continue
            slot = pending.setdefault(spec.table, _Pending(spec))
            slot.rows.append(row)
            slot.records.append(record)
        return pending, dead

    def _dead_letter(self, record: ConsumerRecord, exc: Exception, out: list[DeadLetter]) -> None:
        base = topics.base_name(self.settings.topic_prefix, record.topic)
        if base == topics.DLQ:
            # Re-queueing an unreadable dead letter would loop forever; count it and move on.
            LOST_DLQ.inc()
            log.error("unreadable record on %s[%d]@%d dropped: %s", record.topic, record.partition, record.offset, exc)
            return
        DEAD.labels(base).inc()
        out.append(
            DeadLetter(
                # Derived from the source position, so a replayed batch dead-letters once.
                dlq_id=ids.uuid_from(f"{record.topic}/{record.partition}/{record.offset}"),
                ts=datetime.now(UTC),
                source_topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key.decode("utf-8", "replace") if record.key else None,
                payload_b64=base64.b64encode(record.value or b"").decode(),
                error=f"{type(exc).__name__}: {exc}"[:10_000],
                service="sink",
            )
        )

    def _store(self, slot: _Pending, dead: list[DeadLetter]) -> None:
        rows, records = self._without_stored(slot)
        if not rows:
            return
        self._copy_from_calls(slot.spec, rows)
        try:
            self._insert(slot.spec.table, rows)
        except OperationalError:
            raise  # ClickHouse away: not the data's fault, so retry the batch later
        except Exception as exc:
            log.warning("batch insert into %s failed (%s); storing row by row", slot.spec.table, exc)
            for row, record in zip(rows, records, strict=True):
                try:
                    self._insert(slot.spec.table, [row])
                except OperationalError:
                    raise
                except Exception as row_exc:
                    self._dead_letter(record, row_exc, dead)

    def _copy_from_calls(self, spec: TableSpec, rows: list[dict]) -> None:
        """Fill the call's model, version and environment into score and vote rows whose
        producer did not send them (reviewer votes, older judges), so the per-version
        rollup files them under their call's version. One query per batch that has any;
        the call is the one of the row's own app (another app may use the same event id);
        a call not stored (yet) leaves them empty."""
        fields = spec.call_fields
        missing = [row for row in rows if fields and not row["environment"]]
        if not missing:
            return
        columns = ", ".join(f"any({'ts' if f == 'call_ts' else f})" for f in fields)
        pairs = list({(r["app_id"], str(r["event_id"])) for r in missing})
        found = {
            (r[0], r[1]): r[2:]
            for r in self.client.query(
                # Scores and votes come after their call; the day covers producers' clock skew.
                f"SELECT app_id, event_id, {columns} FROM llm_calls "
                "WHERE ts <= {hi:DateTime64(3, 'UTC')} + INTERVAL 1 DAY "
                "AND app_id IN {apps:Array(String)} AND (app_id, event_id) IN {pairs:Array(Tuple(String, UUID))} "
                "GROUP BY app_id, event_id",
                parameters={"hi": max(r["ts"] for r in missing), "apps": list({a for a, _ in pairs}), "pairs": pairs},
            ).result_rows
        }
        for row in missing:
            values = found.get((row["app_id"], row["event_id"]))
            if values is not None:
                row.update(zip(fields, values, strict=True))

    def _insert(self, table: str, rows: list[dict]) -> None:
        columns = list(rows[0])
        self.client.insert(table, [[row[c] for c in columns] for row in rows], column_names=columns)
        STORED.labels(table).inc(len(rows))

    def _without_stored(self, slot: _Pending) -> tuple[list[dict], list[ConsumerRecord]]:
        """Drop rows whose key repeats in the batch or is already stored (a replay after a
        crash between insert and commit, or a client re-posting a batch). The key is
        (app_id, id) where rows carry an app: another app's row with the same id is not a
        replay and is stored apart.

        One query per batch, bounded: it reads only the partitions (days) of the batch's
        rows and the primary-key ranges of its apps, and returns at most one row per key."""
        key_columns = slot.spec.dedup_key
        if not key_columns:
            return slot.rows, slot.records
        seen: set[tuple] = set()
        rows, records = [], []
        for row, record in zip(slot.rows, slot.records, strict=True):
            key = tuple(row[c] for c in key_columns)
            if key not in seen:
                seen.add(key)
                rows.append(row)
                records.append(record)
        id_col = slot.spec.id_column
        parameters: dict = {"days": sorted({r["ts"].astimezone(UTC).date() for r in rows}), "n": len(seen)}
        if slot.spec.app_scoped:
            condition = (
                f"app_id IN {{apps:Array(String)}} AND (app_id, {id_col}) IN {{keys:Array(Tuple(String, UUID))}}"
            )
            parameters["apps"] = sorted({app for app, _ in seen})
            parameters["keys"] = [(app, str(i)) for app, i in seen]
        else:
            condition = f"{id_col} IN {{keys:Array(UUID)}}"
            parameters["keys"] = [str(i) for (i,) in seen]
        stored = {
            tuple(r)
            for r in self.client.query(
                f"SELECT DISTINCT {', '.join(key_columns)} FROM {slot.spec.table} "
                f"WHERE toDate(ts) IN {{days:Array(Date)}} AND {condition} LIMIT {{n:UInt32}}",
                parameters=parameters,
            ).result_rows
        }
        if stored:
            SKIPPED.labels(slot.spec.table).inc(len(stored))
            keep = [
                (row, rec)
                for row, rec in zip(rows, records, strict=True)
                if tuple(row[c] for c in key_columns) not in stored
            ]
            rows = [row for row, _ in keep]
            records = [rec for _, rec in keep]
        return rows, records


@dataclass
class SinkRunner:
    """The sink as a startable unit: used by `python -m lookout.ingest.sink` and `lookout up`."""

    settings: IngestSettings
    client: Client | None = None
    _producer: AIOKafkaProducer | None = None
    _consumer: object | None = None
    _loop: kafka.CommitAfterLoop | None = None
    _task: asyncio.Task | None = None

    async def start(self) -> None:
        settings = self.settings
        if self.client is None:
            self.client = clickhouse.connect(settings)
            migrations.apply(self.client, settings.retention_days)
        await kafka.ensure_topics(settings)
        self._producer = await kafka.start_producer(settings)
        names = [topics.resolve(settings.topic_prefix, t) for t in topics.ALL]
        self._consumer = kafka.make_consumer(settings, settings.sink_group, *names)
        await self._consumer.start()
        sink = Sink(settings, self.client, self._producer)
        self._loop = kafka.CommitAfterLoop(
            self._consumer, sink.handle, max_records=settings.sink_batch_rows, linger_ms=settings.sink_batch_ms
        )
        self._task = asyncio.create_task(self._loop.run(), name="lookout-sink")

    @property
    def stats(self) -> kafka.ConsumerStats:
        return self._loop.stats if self._loop else kafka.ConsumerStats()

    def ready(self) -> str | None:
        return kafka.loop_problem(self._task)

    async def stop(self) -> None:
        """Finish the batch in hand (insert, commit), then close."""
        await kafka.finish(self._loop, self._task, 30)
        if self._consumer:
            await self._consumer.stop()
        if self._producer:
            await self._producer.stop()


def ops_app(settings: IngestSettings, runner: SinkRunner):
    """The standalone sink's HTTP side: /healthz, /readyz, /metrics."""
    from fastapi import FastAPI

    from lookout.core.body_limit import install_body_limit
    from lookout.core.ops import ops_router

    app = FastAPI(title="Lookout sink")
    install_body_limit(app, settings)
    app.include_router(ops_router({"consumer": runner.ready}))
    return app


async def _main() -> None:
    from lookout.core.ops import serve_until_signal

    settings = IngestSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner = SinkRunner(settings)
    await runner.start()
    log.info("sink running: %s -> %s", settings.kafka_bootstrap, settings.clickhouse_dsn)
    await serve_until_signal(ops_app(settings, runner), settings.http_host, settings.http_port, runner)


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
