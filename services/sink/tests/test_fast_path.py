"""ClickHouse parsing a batch itself stores exactly what validating it in Python stores,
and never stores a record the wire schema refuses: real chdb, real records as ingest
writes them (PII redacted by the real redactor, priced from the packaged price table)."""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY

from lookout.core import clickhouse, migrations, topics
from lookout.core.dead_letters import Batch
from lookout.core.events import LlmCall
from lookout.core.ids import uuid7
from lookout.core.pii import Redactor, redact_call
from lookout.core.pricing import PriceTable
from lookout.core.session import Session
from lookout.core.settings import CommonSettings
from lookout.sink import sql_rows
from lookout.sink.store import Store

PREFIX = "fp."
SECRET = b"fast-path-test-secret-0123456789"


def _stores(chdb_path):
    made = []
    for name in ("fast", "validated"):
        database = f"fp_{name}_{uuid.uuid4().hex[:8]}"
        settings = CommonSettings(clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database=database)
        client = clickhouse.connect(settings)
        migrations.apply(client, settings.retention_days)
        made.append((Store(Session.of(client), PREFIX, chdb=True, fast=name == "fast"), client, settings))
    yield made[0][0], made[1][0]
    for _, client, settings in made:
        client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")


@pytest.fixture
def stores(chdb_path):
    """A Store that parses in ClickHouse and one that validates in Python, on two databases."""
    yield from _stores(chdb_path)


@pytest.fixture(scope="module")
def shared_stores(chdb_path):
    """The same, shared by the cases of one test (each case reads back its own rows)."""
    yield from _stores(chdb_path)


def record(value: bytes | None, offset: int, topic: str = topics.EVENTS) -> ConsumerRecord:
    return ConsumerRecord(topic=PREFIX + topic, partition=0, offset=offset, timestamp=0, timestamp_type=0,
                          key=b"k", value=value, checksum=None, serialized_key_size=1,
                          serialized_value_size=len(value or b""), headers=())


def batch_of(values: Sequence[bytes | None]) -> Batch:
    return Batch([record(v, i) for i, v in enumerate(values)], service="sink", topic_prefix=PREFIX)


def enriched(raw: dict, mode: str = "mask") -> bytes:
    """A call as ingest produces it: validated, redacted, priced, serialised."""
    call = LlmCall.model_validate(raw)
    call, redactions = redact_call(call, Redactor(mode, SECRET))
    prices = PriceTable.load(None)
    metadata = dict(call.metadata)
    update: dict = {}
    if redactions:
        metadata["lookout.pii_redactions"] = str(redactions)
    if call.cost_usd is None:
        cost = prices.cost(call.provider, call.model, call.tokens_in, call.tokens_out)
        if cost is not None:
            update["cost_usd"] = cost
            metadata["lookout.price_table"] = prices.version
    update["metadata"] = metadata
    return call.model_copy(update=update).to_bytes()


def base_call(i: int, **over) -> dict:
    ts = datetime(2026, 11, 30, 12, 0, tzinfo=UTC) - timedelta(seconds=i, microseconds=i * 7)
    call = {
        "event_id": str(uuid7()), "ts": ts.isoformat(), "app_id": "shop", "model": "gpt-4o-mini",
        "provider": "openai", "environment": "production", "tokens_in": 100 + i, "tokens_out": 20 + i,
        "latency_ms": 300.5 + i, "ttft_ms": 80.25, "input": [{"role": "user", "content": f"question {i}"}],
        "output": f"answer {i}", "tags": ["t"], "metadata": {"request": str(i)},
    }
    call.update(over)
    return call


def mixed_calls() -> list[bytes]:
    """Calls of every kind a real app sends: PII in every text field, priced and
    client-priced and unpriced, errors, optional fields set and absent, non-ASCII and
    control characters, offsets other than UTC, several apps, models and versions."""
    pii = "write to jane.doe@example.com or call +44 20 7946 0958, card 4111 1111 1111 1111"
    calls = [
        base_call(0),
        base_call(1, prompt=pii, output=pii, context=[pii, "plain"], metadata={"note": pii, "k": "v"},
                  input=[{"role": "system", "content": "be brief", "name": "sys"},
                         {"role": "user", "content": pii}, {"role": "assistant"}]),
        base_call(2, cost_usd=0.0123, model="claude-3-5-sonnet@20240620", provider="anthropic"),
        base_call(3, model="meta-llama/Llama-3.1-8B-Instruct", provider="vllm"),  # no price: unknown
        base_call(4, status="error", error="rate limited: 429\n\tretry", output=None, tokens_out=None,
                  latency_ms=None, ttft_ms=None),
        base_call(5, user_id="alice@example.com", session_id="sess-1", trace_id="0af7651916cd43dd8448eb211c80319c",
                  span_id="b7ad6b7169203331", reference="the reference", logprobs=[-0.1, -2.5, 0.0, -1e-7]),
        base_call(6, model_version="ft:gpt-4o-mini:org:name:id", prompt_version="", environment="staging"),
        base_call(7, input=[], prompt="raw prompt", tags=[], metadata={}),
        base_call(8, output="Grüße, 你好, emoji 🚀, quotes \" and \\ backslash, / slash, \x01\x1f\x7f controls",
                  input=[{"role": "user", "content": "tab\there\nnewline \u00e9 \U0001f600 </script>"}]),
        base_call(9, ts=(datetime(2026, 11, 30, 23, 30, 0, 999_999, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
                         .isoformat()), app_id="blog"),
        base_call(10, ts="2026-11-30T01:02:03+02:00", app_id="blog", tokens_in=0, tokens_out=0, cost_usd=0.0),
        base_call(11, app_id="other.app:v2", model="gpt-4o", context=[]),
    ]
    out = [enriched(c) for c in calls]
    out.append(enriched(base_call(12, output=pii, app_id="hashed"), mode="hash"))
    out.append(enriched(base_call(13, output=pii, app_id="raw"), mode="off"))
    return out


CALL_COLUMNS = [c for c, _ in sql_rows.CALLS.columns if c != "ingested_at"]


def stored_calls(store: Store, event_id: str | None = None) -> list[tuple]:
    where = "WHERE event_id = {id:UUID}" if event_id else ""
    return store.session.rows(f"SELECT {', '.join(CALL_COLUMNS)} FROM llm_calls {where} ORDER BY app_id, event_id",
                              **({"id": event_id} if event_id else {}))


def rollups(store: Store) -> tuple[list[tuple], list[tuple]]:
    calls = store.session.rows(
        "SELECT minute, app_id, model, environment, countMerge(calls), sumMerge(errors), sumMerge(tokens_in), "
        "sumMerge(tokens_out), round(sumMerge(cost_usd), 12), quantilesTDigestIfMerge(0.5, 0.9, 0.99)(latency_ms) "
        "FROM calls_1m GROUP BY minute, app_id, model, environment ORDER BY ALL")
    versions = store.session.rows(
        "SELECT minute, app_id, model, model_version, environment, countMerge(calls) FROM versions_1m "
        "GROUP BY minute, app_id, model, model_version, environment ORDER BY ALL")
    return calls, versions


def test_the_fast_path_stores_exactly_the_rows_and_rollups_the_validating_path_would(stores):
    fast, validated = stores
    values = mixed_calls()
    for store in (fast, validated):
        batch = batch_of(values)
        store.write(batch)
        assert batch.dead == []
    rows = stored_calls(fast)
    assert len(rows) == len(values)
    assert rows == stored_calls(validated)
    assert rollups(fast) == rollups(validated)
    assert {r[CALL_COLUMNS.index("cost_source")] for r in rows} == {"price_table", "client", "unknown"}
    assert max(r[CALL_COLUMNS.index("pii_redactions")] for r in rows) >= 3
    # ingested_at is the sink's clock: set on both, to the same second or so.
    (now,) = fast.session.rows("SELECT max(ingested_at) - min(ingested_at) < 60 FROM llm_calls")[0]
    assert now == 1


def test_the_fast_path_reads_every_float_to_the_bit_as_python_does(stores):
    fast, validated = stores
    rng = random.Random(19)
    values = [enriched(base_call(i, cost_usd=rng.random() * 10 ** rng.randint(-8, 2),
                                 latency_ms=rng.random() * 10 ** rng.randint(0, 6),
                                 ttft_ms=rng.random() * 10 ** rng.randint(-3, 3)))
              for i in range(400)]
    for store in (fast, validated):
        batch = batch_of(values)
        store.write(batch)
        assert batch.dead == []
    query = "SELECT event_id, cost_usd, latency_ms, ttft_ms FROM llm_calls ORDER BY event_id"
    stored = fast.session.rows(query)
    assert stored == validated.session.rows(query)
    sent = {call["event_id"]: (call["cost_usd"], call["latency_ms"], call["ttft_ms"])
            for call in map(orjson.loads, values)}
    assert {str(event_id): tuple(floats) for event_id, *floats in stored} == sent


def _validated_small() -> float:
    return REGISTRY.get_sample_value("lookout_sink_validated_records_total",
                                     {"table": "llm_calls", "reason": "small"}) or 0.0


def test_a_batch_of_fewer_records_than_sql_min_records_is_validated_in_python_and_stored_the_same(stores):
    fast, validated = stores
    values = mixed_calls()
    small = Store(fast.session, PREFIX, chdb=True, fast=True, sql_min_records=len(values) + 1)
    before = _validated_small()
    batch = batch_of(values)
    small.write(batch)
    assert batch.dead == []
    assert _validated_small() - before == len(values)
    validated.write(batch_of(values))
    assert stored_calls(fast) == stored_calls(validated)
    assert rollups(fast) == rollups(validated)
    # At the threshold the batch is ClickHouse's to parse.
    at_threshold = Store(fast.session, PREFIX, chdb=True, fast=True, sql_min_records=2)
    at_threshold.write(batch_of([enriched(base_call(20)), enriched(base_call(21))]))
    assert _validated_small() - before == len(values)
    assert len(stored_calls(fast)) == len(values) + 2


def test_a_batch_with_one_poison_record_dead_letters_it_and_stores_the_others_once(stores):
    fast, _ = stores
    good = mixed_calls()
    # Reads like ingest's output up to app_id, but the schema refuses it: the server
    # refuses the batch, and the validating way finds the record and names the field.
    poison = orjson.loads(good[0])
    poison["event_id"] = str(uuid7())
    poison["environment"] = "prod; DROP TABLE llm_calls"
    values = [*good[:5], orjson.dumps(poison), *good[5:], b"not json at all", None]
    batch = batch_of(values)
    fast.write(batch)
    assert sorted(d.offset for d in batch.dead) == [5, len(values) - 2, len(values) - 1]
    errors = {d.offset: d.error for d in batch.dead}
    assert "environment" in errors[5]
    assert fast.session.rows("SELECT count(), uniqExact(event_id) FROM llm_calls") == [(len(good), len(good))]
    # The same batch again (a replay after a crash before the commit) stores nothing twice.
    again = batch_of(values)
    fast.write(again)
    assert len(again.dead) == 3
    assert fast.session.rows("SELECT count() FROM llm_calls") == [(len(good),)]
    assert fast.session.rows("SELECT countMerge(calls) FROM calls_1m") == [(len(good),)]


def test_a_replayed_batch_and_a_repeated_id_are_skipped_on_the_fast_path_but_another_apps_id_is_not(stores):
    fast, _ = stores
    first = orjson.loads(enriched(base_call(1)))
    same_id_other_app = dict(first, app_id="blog")
    values = [orjson.dumps(first), orjson.dumps(first), orjson.dumps(same_id_other_app)]
    fast.write(batch_of(values))
    fast.write(batch_of(values))
    assert fast.session.rows("SELECT app_id, count() FROM llm_calls GROUP BY app_id ORDER BY app_id") == [
        ("blog", 1), ("shop", 1)]


def test_the_record_head_gives_app_id_and_utc_day_without_decoding():
    value = enriched(base_call(9, ts="2026-11-30T23:30:00-05:00", app_id="blog"))
    key = sql_rows.CALLS.key(value)
    assert key is not None and key.app_id == "blog" and key.day.isoformat() == "2026-12-01"
    assert key.id == str(uuid.UUID(orjson.loads(value)["event_id"]))
    assert sql_rows.CALLS.key(b'{"event_id": "x"}') is None  # not ingest's head: validated instead
    assert sql_rows.CALLS.key(value.replace(b'"schema":"llm_call/1"', b'"schema":"llm_call/2"')) is None


_DROP = object()


def _variants() -> list[tuple[str, bytes]]:
    """Records next to a valid one, most of which the schema refuses."""
    good = orjson.loads(enriched(base_call(0)))

    def with_(**changes) -> bytes:
        d = dict(good, event_id=str(uuid7()))
        for k, v in changes.items():
            if v is _DROP:
                d.pop(k, None)
            else:
                d[k] = v
        return orjson.dumps(d)

    cases = {
        "valid": with_(),
        "unknown top-level field": with_(newer_field=1),
        "schema missing": with_(schema=_DROP),
        "schema null": with_(schema=None),
        "schema other": with_(schema="llm_call/2"),
        "nil event id": with_(event_id="00000000-0000-0000-0000-000000000000"),
        "event id not a uuid": with_(event_id="not-a-uuid"),
        "event id as hex": with_(event_id=uuid.uuid4().hex),
        "ts without zone": with_(ts="2026-11-30T12:00:00"),
        "ts as a number": with_(ts=1_764_504_000),
        "ts with 7 digits": with_(ts="2026-11-30T12:00:00.1234567Z"),
        "ts on 30 February": with_(ts="2026-02-30T12:00:00Z"),
        "ts in 1969": with_(ts="1969-12-31T23:59:59Z"),
        "ts year 9999": with_(ts="9999-12-31T23:59:59Z"),
        "ts hour 24": with_(ts="2026-11-30T24:00:00Z"),
        "ts with a space": with_(ts="2026-11-30 12:00:00Z"),
        "app id missing": with_(app_id=_DROP),
        "app id with a quote": with_(app_id="shop'--"),
        "app id with --": with_(app_id="shop--x"),
        "app id with a slash": with_(app_id="shop/x"),
        "app id too long": with_(app_id="a" * 129),
        "environment empty": with_(environment=""),
        "environment null": with_(environment=None),
        "environment missing (defaults)": with_(environment=_DROP),
        "model with a space": with_(model="gpt 4"),
        "model unicode": with_(model="gpt-4o-mini\u00e9"),
        "model version with a comma": with_(model_version="v1,v2"),
        "provider too long": with_(provider="p" * 65),
        "status other": with_(status="maybe"),
        "tokens negative": with_(tokens_in=-1),
        "tokens too many": with_(tokens_in=100_000_001),
        "tokens fractional": with_(tokens_in=1.5),
        "tokens as float": with_(tokens_in=5.0),
        "tokens as bool": with_(tokens_in=True),
        "tokens as text": with_(tokens_in="12"),
        "latency negative": with_(latency_ms=-0.5),
        "latency as text": with_(latency_ms="400.5"),
        "latency as inf text": with_(latency_ms="inf"),
        "cost negative": with_(cost_usd=-1.0),
        "cost as nan text": with_(cost_usd="nan"),
        "output a number": with_(output=5),
        "output a list": with_(output=["a"]),
        "output an object": with_(output={"a": 1}),
        "output too long": with_(output="x" * 1_000_001),
        "input null": with_(input=None),
        "input a string": with_(input="hello"),
        "message unknown key": with_(input=[{"role": "user", "content": "x", "extra": 1}]),
        "message without role": with_(input=[{"content": "x"}]),
        "message role empty": with_(input=[{"role": "", "content": "x"}]),
        "message content a number": with_(input=[{"role": "user", "content": 1}]),
        "message with U+2028": with_(input=[{"role": "user", "content": "a\u2028b"}]),
        "tags null": with_(tags=None),
        "tags with a number": with_(tags=[1]),
        "too many tags": with_(tags=["t"] * 257),
        "metadata null": with_(metadata=None),
        "metadata value a number": with_(metadata={"a": 1}),
        "metadata value too long": with_(metadata={"a": "x" * 1025}),
        "redaction count not digits": with_(metadata={"lookout.pii_redactions": "two"}),
        "redaction count padded": with_(metadata={"lookout.pii_redactions": " 2"}),
        "context null": with_(context=None),
        "context a string": with_(context="text"),
        "context with null": with_(context=["a", None]),
        "logprobs text": with_(logprobs=["-0.5"]),
        "logprobs null": with_(logprobs=None),
        "trace id too long": with_(trace_id="a" * 65),
        "user id too long": with_(user_id="u" * 1025),
    }
    raw = {
        "two objects in one record": with_() + with_(),
        "a key given twice": with_()[:-1] + b',"app_id":"other"}',
        "metadata key given twice": with_(metadata={"a": "1"}).replace(b'"a":"1"', b'"a":"1","a":"2"'),
        "invalid utf-8 in output": with_(output="OUTPUT").replace(b"OUTPUT", b"\xff\xfe"),
        "lone surrogate escape": with_(output="OUTPUT").replace(b"OUTPUT", b"\\ud800"),
        "trailing garbage": with_() + b" x",
        "a JSON array": b"[" + with_() + b"]",
        "tokens huge": with_(tokens_in=123454321).replace(b"123454321", b"1" + b"0" * 30),
        "NaN literal": with_(latency_ms=1.0).replace(b'"latency_ms":1.0', b'"latency_ms":NaN'),
    }
    return list(cases.items()) + list(raw.items())


VARIANTS = _variants()


@pytest.mark.parametrize(("case", "value"), VARIANTS, ids=[c for c, _ in VARIANTS])
def test_the_fast_path_never_stores_a_record_the_schema_refuses_and_stores_the_others_as_validated(
    shared_stores, case, value
):
    fast, validated = shared_stores
    try:
        event_id = str(LlmCall.from_bytes(value).event_id)
        schema_ok = True
    except Exception:
        schema_ok = False
    # The fast way: the head read in Python, then the statement.
    sql_ok = sql_rows.CALLS.key(value) is not None
    if sql_ok:
        try:
            fast._insert_sql(sql_rows.CALLS, [value])
        except Exception:
            sql_ok = False
    assert schema_ok or not sql_ok, f"{case}: ClickHouse stored a record the wire schema refuses"
    if case == "valid":
        assert sql_ok, "the fast path must take ingest's own records"
    if sql_ok:
        validated.write(batch_of([value]))
        assert stored_calls(fast, event_id) == stored_calls(validated, event_id), case
        assert len(stored_calls(fast, event_id)) == 1


def _may_raise_priority() -> bool:
    """ClickHouse applies os_thread_priority only with CAP_SYS_NICE (bit 23 of CapEff)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 23 & 1)
    return False


def _busy_nice_values(write) -> set[int]:
    """The nice values of this process's threads that used CPU while `write()` ran."""
    seen: set[int] = set()
    last: dict[str, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for stat in Path("/proc/self/task").glob("*/stat"):
                with contextlib.suppress(OSError):
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                    ticks, nice = int(fields[11]) + int(fields[12]), int(fields[16])
                    if ticks > last.get(stat.parent.name, ticks):
                        seen.add(nice)
                    last[stat.parent.name] = ticks
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        write()
    finally:
        done.set()
        sampler.join()
    return seen


@pytest.mark.skipif(not _may_raise_priority(), reason="no CAP_SYS_NICE: ClickHouse ignores os_thread_priority")
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "validating"])
def test_with_a_nice_value_clickhouse_stores_the_batch_on_threads_at_that_value(chdb_path, fast):
    database = f"fp_nice_{uuid.uuid4().hex[:8]}"
    settings = CommonSettings(clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database=database)
    client = clickhouse.connect(settings)
    migrations.apply(client, settings.retention_days)
    try:
        # Long answers, so that ClickHouse works on each batch long enough to be seen at it.
        call = orjson.loads(enriched(base_call(0, output="a long answer of many words " * 400)))
        for nice in (10, 0):
            store = Store(Session.of(client), PREFIX, chdb=True, fast=fast, nice=nice)
            client.command("TRUNCATE TABLE llm_calls")
            batch = batch_of([orjson.dumps({**call, "event_id": str(uuid7())}) for _ in range(3000)])
            busy = _busy_nice_values(lambda b=batch, s=store: s.write(b))
            assert not batch.dead and store.session.rows("SELECT count() FROM llm_calls") == [(3000,)]
            if nice:
                assert nice in busy, busy  # ClickHouse's threads stored it at that value
            else:
                assert 10 not in busy, busy  # nothing left at the last batch's value
    finally:
        client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
