"""The already-stored check writes plain keys into its query and binds anything else."""

from lookout.sink.store import _literal


def test_plain_app_ids_and_uuids_are_written_as_a_list_of_tuples():
    keys = [("shop", "0190c0de-0000-7000-8000-000000000001"), ("a.b:c-d_e", "0190c0de-0000-7000-8000-000000000002")]
    assert _literal(keys) == (
        "(('shop','0190c0de-0000-7000-8000-000000000001'),('a.b:c-d_e','0190c0de-0000-7000-8000-000000000002'))"
    )
    assert _literal([("0190c0de-0000-7000-8000-000000000001",)]) == "('0190c0de-0000-7000-8000-000000000001')"


def test_a_key_with_any_other_character_or_no_keys_is_left_to_binding():
    for odd in ("it's", "a\\b", "x y", "é", "", "a" * 129):
        assert _literal([("shop", "0190c0de-0000-7000-8000-000000000001"), (odd, "0190")]) is None
    assert _literal([("shop", 7)]) is None
    assert _literal([]) is None


def test_a_full_batch_of_long_keys_is_checked_in_one_query(chdb_path):
    # 5 000 keys of a 64-character app written out make a query over ClickHouse's default
    # 256 KiB max_query_size; the check must still answer, or the sink retries the batch forever.
    import uuid
    from datetime import UTC, datetime

    from lookout.core import clickhouse, migrations, topics
    from lookout.core.session import Session
    from lookout.core.settings import CommonSettings
    from lookout.sink.rows import TABLES
    from lookout.sink.store import Store

    settings = CommonSettings(clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database=f"sc_{uuid.uuid4().hex[:8]}")
    client = clickhouse.connect(settings)
    migrations.apply(client, settings.retention_days)
    try:
        store = Store(Session.of(client), "sc.", chdb=True)
        keys = [("a" * 64, str(uuid.uuid4())) for _ in range(5000)]
        assert len(_literal(keys) or "") > 256 * 1024
        assert store._stored(TABLES[topics.EVENTS], keys, {datetime.now(UTC).date()}) == set()
    finally:
        client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
