"""One process of the pipeline benchmark (bench_pipeline.py starts these, each pinned to a
core with taskset): settings from LOOKOUT_* as every service reads them.

    python -m bench.pipeline_node key          print a new API key of the chdb store (all apps)
    python -m bench.pipeline_node ingest       ingest alone (python -m lookout.ingest's service)
    python -m bench.pipeline_node sink [OUT]   the sink alone; with OUT, a poller on its store
                                               writes there when each latency batch became
                                               queryable
    python -m bench.pipeline_node both         ingest + sink on one store, as `lookout up` runs them
    python -m bench.pipeline_node raw-produce  baseline: aiokafka produce of events (stdin: a file)
    python -m bench.pipeline_node raw-insert SRC [ROWS]  baseline: clickhouse-connect insert of their rows,
                                               ROWS a batch (default 5000; SRC: a file, or topic:N for
                                               the sink's input)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson


def _key() -> None:
    from lookout.core import clickhouse, migrations
    from lookout.core.auth import ApiKeyStore
    from lookout.core.settings import CommonSettings

    settings = CommonSettings()
    client = clickhouse.connect(settings)
    migrations.apply(client, settings.retention_days)
    _, plaintext = ApiKeyStore(client).create("*", ["ingest", "read"], name="bench")
    print(plaintext)


def _serve(which: str, out: str | None) -> int:
    from lookout.core.serving import serve
    from lookout.core.session import Session
    from lookout.ingest.service import IngestService
    from lookout.ingest.settings import IngestSettings
    from lookout.sink.service import SinkService
    from lookout.sink.settings import SinkSettings

    ingest_settings, sink_settings = IngestSettings(), SinkSettings()
    if which == "ingest":
        services: list = [IngestService(ingest_settings)]
    elif which == "sink":
        services = [SinkService(sink_settings)]
    else:
        session = Session.connect(ingest_settings, migrate=True)
        services = [IngestService(ingest_settings, session), SinkService(sink_settings, session)]
    if out:
        threading.Thread(target=_poll_latency, args=(sink_settings, Path(out)), daemon=True).start()
    return asyncio.run(serve(services, ingest_settings.http_host, ingest_settings.http_port))


def _poll_latency(settings, out: Path) -> None:
    """When each batch of the latency run had all its calls stored: a client of its own on
    the store (a chdb path serves several clients of one process). It runs in the sink's
    process, on its core, so it reads only the rows from just before the oldest batch not
    yet complete on (the sort key's ts range; a batch's calls are stamped within 0.5 s of
    each other, in posting order): a poll over the whole run's rows every 20 ms took a
    growing share of the core the sink was being measured on. The batch is the calls'
    session_id (`latency-N`, stored pseudonymised with the bench's PII secret), a plain
    column: reading it from the metadata Map cost ~4x the CPU a poll (~37 against ~9.5 ms
    over 150 000 rows), ~0.3 of the sink's core at 50 polls/s. And it queries only when the
    sink's stored-rows counter moved (checked every 20 ms): rows become queryable when an
    insert returns, and the counter counts them right after, so the resolution is the same
    as a query every 20 ms, at a tenth of the queries (those took 0.12 of the sink's core
    and a third of its busy samples at 5 000 events/s)."""
    from datetime import timedelta

    from lookout.core import clickhouse
    from lookout.core.pii import pseudonymise
    from lookout.sink.store import STORED

    def stored() -> float:
        return sum(sample.value for metric in STORED.collect() for sample in metric.samples
                   if sample.name.endswith("_total") and sample.labels.get("table") == "llm_calls")

    client = clickhouse.connect(settings)
    secret = os.environ["LOOKOUT_PII_SECRET"].encode()
    ticks = {pseudonymise(f"latency-{i}", secret): str(i) for i in range(36_000)}  # an hour of batches
    seen: dict[str, float] = {}
    first_ts: dict[int, object] = {}
    last_stored, last_cpu_note = -1.0, 0.0
    while True:
        if (now_stored := stored()) == last_stored:
            time.sleep(0.02)
            continue
        last_stored = now_stored
        complete = 0
        while str(complete) in seen:
            complete += 1
        since = first_ts.get(complete - 1)
        try:
            rows = client.query(
                "SELECT session_id AS b, count(), min(ts) FROM llm_calls WHERE app_id = 'latency' "
                "AND ts >= {since:DateTime64(3, 'UTC')} GROUP BY b",
                {"since": since - timedelta(seconds=5) if since is not None else datetime(1971, 1, 1, tzinfo=UTC)},
            ).result_rows
        except Exception:
            last_stored = -1.0  # ask again
            time.sleep(0.1)
            continue
        now = time.time()
        expected = int(out.with_suffix(".per").read_text()) if out.with_suffix(".per").exists() else 0
        fresh = False
        for batch, count, lo in rows:
            batch = ticks.get(batch, "")
            if expected and batch and count >= expected and batch not in seen:
                seen[batch] = now
                first_ts[int(batch)] = lo
                fresh = True
        if fresh:
            out.write_text(json.dumps(seen))
        if now - last_cpu_note > 1:
            last_cpu_note = now
            out.with_suffix(".cpu").write_text(str(time.thread_time()))  # its own CPU, for the bench's account
        time.sleep(0.02)


def _raw_produce(path: str) -> None:
    """The same events, serialised as ingest would send them, produced with aiokafka
    (a send per event, acks=all, 500 at a time): events/s and CPU s per 1 000 on stdout."""
    from lookout.core import kafka, topics
    from lookout.core.settings import CommonSettings

    settings = CommonSettings()
    values = [orjson.loads(line) for line in Path(path).read_bytes().splitlines()]
    payloads = [(orjson.dumps(e), f"{e['app_id']}/{e['model']}".encode()) for e in values]

    async def run() -> dict[str, float]:
        await kafka.ensure_topics(settings, [topics.EVENTS])
        producer = await kafka.start_producer(settings)
        name = topics.resolve(settings.topic_prefix, topics.EVENTS)
        try:
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(payloads), 500):
                futures = [await producer.send(name, value, key=key) for value, key in payloads[i : i + 500]]
                await asyncio.gather(*futures)
            return {"per_s": len(payloads) / (time.perf_counter() - start),
                    "cpu_s_per_1000": (time.process_time() - cpu) / len(payloads) * 1000}
        finally:
            await producer.stop()

    print(json.dumps(asyncio.run(run())))


def _sink_input(count: int) -> list[bytes]:
    """The first `count` records of the sink's input topic (llm.events under the prefix):
    the calls exactly as ingest wrote them (redacted, priced), warm-up ones included."""
    from lookout.core import kafka, topics
    from lookout.core.settings import CommonSettings

    settings = CommonSettings()

    async def read() -> list[bytes]:
        consumer = kafka.make_consumer(settings, None, topics.resolve(settings.topic_prefix, topics.EVENTS))
        await consumer.start()
        try:
            values: list[bytes] = []
            while len(values) < count:
                for part in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                    values.extend(r.value for r in part if r.value is not None)
            return values[:count]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _raw_insert(source: str, chunk: int = 5000) -> None:
    """The rows of the same calls (built before the clock starts), inserted with
    clickhouse-connect in batches of `chunk` rows into the same table with the same materialized
    views: rows/s on stdout. `source`: a file of JSON lines, or `topic:N` for the first N
    records of the sink's input topic, i.e. exactly the rows the sink stores."""
    from lookout.core import clickhouse, migrations, topics
    from lookout.core.events import LlmCall
    from lookout.core.settings import CommonSettings
    from lookout.sink.rows import TABLES

    settings = CommonSettings()
    if source.startswith("topic:"):
        values = _sink_input(int(source.removeprefix("topic:")))
    else:
        values = Path(source).read_bytes().splitlines()
    client = clickhouse.connect(settings)
    migrations.apply(client, settings.retention_days)
    spec = TABLES[topics.EVENTS]
    rows = [spec.to_row(LlmCall.from_bytes(v)) for v in values]
    columns = list(rows[0])
    data = [[r[c] for c in columns] for r in rows]
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(data), chunk):
        client.insert(spec.table, data[i : i + chunk], column_names=columns)
    wall = time.perf_counter() - start
    print(json.dumps({"per_s": len(data) / wall, "cpu_s_per_1000": (time.process_time() - cpu) / len(data) * 1000,
                      "rows": len(data)}))


def main() -> int:
    what = sys.argv[1]
    if what == "key":
        _key()
    elif what in ("ingest", "sink", "both"):
        return _serve(what, sys.argv[2] if len(sys.argv) > 2 else None)
    elif what == "raw-produce":
        _raw_produce(sys.argv[2])
    elif what == "raw-insert":
        _raw_insert(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5000)
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
