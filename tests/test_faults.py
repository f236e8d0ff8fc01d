"""Faults the pipeline must survive without losing or doubling an accepted event."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time

import httpx
import orjson

from lookout.core import kafka, topics
from lookout.testing.brokers import free_port
from lookout.testing.marks import on_kafka_only
from lookout.testing.waiting import wait_until
from tests.events import llm_call
from tests.test_pipeline import post_in_batches


def test_broker_outage_answers_503_with_retry_after_and_loses_no_accepted_event(kafka_ingest_stack, kafka_broker):
    stack = kafka_ingest_stack
    accepted: list[dict] = []
    refused = 0
    with stack.http(timeout=60) as http:
        batch = [llm_call("outage", i=i) for i in range(200)]
        assert http.post("/v1/events", json={"events": batch}).status_code == 200
        accepted += batch
        kafka_broker.stop()
        try:
            for n in range(3):
                batch = [llm_call("outage", i=1000 * (n + 1) + i) for i in range(100)]
                r = http.post("/v1/events", json={"events": batch})
                assert r.status_code == 503, r.text
                assert int(r.headers["Retry-After"]) >= 1
                assert "retry" in r.json()["error"]["message"]
                refused += 1
        finally:
            kafka_broker.start()
        # The client retries the refused batches and sends more, as the SDK would.
        deadline = time.monotonic() + 90
        pending = [llm_call("outage", i=5000 + i) for i in range(300)]
        while pending:
            r = http.post("/v1/events", json={"events": pending[:100]})
            if r.status_code == 200:
                accepted += pending[:100]
                pending = pending[100:]
            else:
                assert r.status_code == 503, r.text
                assert time.monotonic() < deadline, "ingest did not recover after the broker came back"
                time.sleep(1)
    assert refused == 3
    ids = {e["event_id"] for e in accepted}
    # A refused batch may still reach the broker (503 means "not known to be accepted", and a
    # client retries it with the same ids), so a row count can pass before every accepted id is
    # stored: wait for the ids themselves.
    def stored() -> set[str]:
        return {str(r[0]) for r in stack.client.query(
            "SELECT event_id FROM llm_calls WHERE app_id='outage'").result_rows}

    wait_until("every accepted event stored", lambda: ids <= stored(), every=0.5)  # every accepted event is there...
    assert stack.duplicate_rows("outage") == 0  # ...once


def test_poison_messages_on_every_topic_go_to_the_dead_letter_queue_and_the_rest_is_stored(ingest_stack):
    stack = ingest_stack
    settings = stack.settings
    poison = {name: f"poison on {name}".encode() for name in topics.ALL if name != topics.DLQ}
    poison[topics.EVENTS] = orjson.dumps({"event_id": "not-a-uuid", "app_id": "x"})

    async def write_raw():
        producer = await kafka.start_producer(settings)
        try:
            for name, payload in poison.items():
                await producer.send_and_wait(topics.resolve(settings.topic_prefix, name), payload, key=b"bad")
            # A dead letter that is itself unreadable is counted and skipped, not looped.
            await producer.send_and_wait(topics.resolve(settings.topic_prefix, topics.DLQ), b"\xff\xfe", key=b"x")
        finally:
            await producer.stop()

    asyncio.run(write_raw())
    post_in_batches(stack, [llm_call("after-poison", i=i) for i in range(20)])
    assert stack.wait_for_calls("after-poison", 20) == 20
    assert stack.wait_for("SELECT count() FROM dead_letters", len(poison), timeout=60) == len(poison)
    rows = stack.client.query("SELECT source_topic, payload, error FROM dead_letters").result_rows
    by_topic = {topics.base_name(settings.topic_prefix, t): (p, e) for t, p, e in rows}
    assert set(by_topic) == set(poison)
    assert by_topic[topics.SCORES][0] == "poison on llm.scores"  # original bytes kept
    assert "event_id" in by_topic[topics.EVENTS][1]  # the error names the field


def _chdb_count(path: str, database: str, sql: str) -> int:
    """Query a chdb path from a fresh process (this one holds another path)."""
    code = (
        "import clickhouse_connect,sys;"
        f"c=clickhouse_connect.get_client(dsn='chdb://{path}');"
        f"print(c.query(\"\"\"{sql}\"\"\".replace('DB', '{database}')).result_rows[0][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().splitlines()[-1])


def _sink_process(settings, chdb_dir: str, port: int) -> subprocess.Popen:
    env = dict(
        os.environ,
        LOOKOUT_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        LOOKOUT_KAFKA_IDEMPOTENCE=settings.kafka_idempotence,
        LOOKOUT_TOPIC_PREFIX=settings.topic_prefix,
        LOOKOUT_CLICKHOUSE_DSN=f"chdb://{chdb_dir}",
        LOOKOUT_CLICKHOUSE_DATABASE="sinktest",
        LOOKOUT_SINK_BATCH_ROWS="500",
        LOOKOUT_HTTP_HOST="127.0.0.1",
        LOOKOUT_HTTP_PORT=str(port),
        LOOKOUT_SINK_GROUP="killed-sink",
    )
    return subprocess.Popen([sys.executable, "-m", "lookout.sink"], env=env)


@on_kafka_only
def test_a_sink_killed_mid_stream_and_restarted_stores_every_event_once(ingest_stack):
    """A second sink, in its own process with its own chdb path, is SIGKILLed while it
    works through 10 000 events; the restarted sink ends with exactly 10 000 rows."""
    stack = ingest_stack
    chdb_dir = tempfile.mkdtemp(prefix="lookout-killed-sink-")
    port = free_port()
    post_in_batches(stack, [llm_call("killed", i=i) for i in range(10_000)])
    sink = _sink_process(stack.settings, chdb_dir, port)
    try:
        # Kill it once it has stored some but not all (it reports progress on /metrics).
        def stored() -> float:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                return 0
            metric = 'lookout_sink_rows_stored_total{table="llm_calls"}'
            lines = [ln for ln in text.splitlines() if ln.startswith(metric)]
            return float(lines[0].split()[-1]) if lines else 0

        wait_until("1 000 calls stored", lambda: stored() >= 1000, timeout=120, every=0.1)
        sink.send_signal(signal.SIGKILL)
        sink.wait(10)
        sink = _sink_process(stack.settings, chdb_dir, port)
        wait_until("the restarted sink ready", lambda: _ready(port, sink), timeout=60, every=0.1)
        # Done once the group's committed offsets reach the end of llm.events.
        # (<= 0: Tansu reports a high watermark below the committed end offset.)
        wait_until("the sink group caught up", lambda: _group_lag(stack.settings, "killed-sink") <= 0,
                   timeout=180, every=0.1)
    finally:
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(60) == 0
    total = _chdb_count(chdb_dir, "sinktest", "SELECT count() FROM DB.llm_calls WHERE app_id='killed'")
    distinct = _chdb_count(chdb_dir, "sinktest", "SELECT uniqExact(event_id) FROM DB.llm_calls WHERE app_id='killed'")
    assert (total, distinct) == (10_000, 10_000)


def _ready(port: int, proc: subprocess.Popen) -> bool:
    assert proc.poll() is None, f"sink exited with {proc.returncode}"
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _group_lag(settings, group: str) -> int:
    async def lag() -> int:
        from aiokafka import TopicPartition

        name = topics.resolve(settings.topic_prefix, topics.EVENTS)
        # A member of the group that never subscribes: it reads the group's committed
        # offsets without joining (and so without disturbing) the group.
        consumer = kafka.make_consumer(settings, group)
        await consumer.start()
        try:
            # ensure_topics created it with this many partitions.
            parts = [TopicPartition(name, p) for p in range(settings.kafka_topic_partitions)]
            ends = await consumer.end_offsets(parts)
            total = 0
            for tp in parts:
                total += ends[tp] - (await consumer.committed(tp) or 0)
            return total
        finally:
            await consumer.stop()

    return asyncio.run(lag())
