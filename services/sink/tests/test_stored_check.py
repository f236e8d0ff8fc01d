"""The already-stored check: one query per batch whose keys travel as data, whatever
characters the keys hold and however many there are."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from lookout.core import clickhouse, migrations, topics
from lookout.core.session import Session
from lookout.core.settings import CommonSettings
from lookout.sink.rows import TABLES
from lookout.sink.store import Store


@pytest.fixture
def store(chdb_path):
    settings = CommonSettings(clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database=f"sc_{uuid.uuid4().hex[:8]}")
    client = clickhouse.connect(settings)
    migrations.apply(client, settings.retention_days)
    yield Store(Session.of(client), "sc.", chdb=True)
    client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")


def _store_call(store: Store, app_id: str, event_id: str, ts: datetime) -> None:
    store.session.command(
        "INSERT INTO llm_calls (event_id, ts, app_id, model, environment, provider) "
        "VALUES ({id:UUID}, {ts:DateTime64(3, 'UTC')}, {app:String}, 'm', 'production', 'p')",
        {"id": event_id, "ts": ts, "app": app_id})


def test_a_full_batch_of_long_keys_is_checked_in_one_query(store):
    # 5 000 keys of a 64-character app written into the query would be ~450 KB of SQL, over
    # ClickHouse's default 256 KiB max_query_size; as data the query stays small.
    keys = [("a" * 64, str(uuid.uuid4())) for _ in range(5000)]
    ts = datetime.now(UTC)
    _store_call(store, "a" * 64, keys[1234][1], ts)
    assert store._stored(TABLES[topics.EVENTS], keys, {ts.date()}) == {keys[1234]}


def test_keys_with_quotes_backslashes_and_other_characters_find_exactly_their_rows(store):
    ts = datetime.now(UTC)
    odd = ["it's", "a\\b", "tab\there", "new\nline", "é ü 你好", "') OR 1=1 --"]
    keys = [(app, str(uuid.uuid4())) for app in odd]
    for app, event_id in keys[::2]:
        _store_call(store, app, event_id, ts)
    # The same id under another app is not a replay of it.
    others = [("other", event_id) for _, event_id in keys[::2]]
    assert store._stored(TABLES[topics.EVENTS], keys + others, {ts.date()}) == set(keys[::2])


def test_a_table_whose_ids_are_not_per_app_is_checked_by_id(store):
    ts = datetime.now(UTC)
    dlq_id = str(uuid.uuid4())
    store.session.command(
        "INSERT INTO dead_letters (dlq_id, ts, source_topic, error, payload) "
        "VALUES ({id:UUID}, {ts:DateTime64(3, 'UTC')}, 't', 'e', 'p')", {"id": dlq_id, "ts": ts})
    assert store._stored(TABLES[topics.DLQ], [(dlq_id,), (str(uuid.uuid4()),)], {ts.date()}) == {(dlq_id,)}
