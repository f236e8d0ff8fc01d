from lookout.core import migrations


def test_migrations_apply_once_and_are_recorded(ch):
    # The fixture applied them; a second run applies nothing and changes nothing.
    tables_before = {r[0] for r in ch.query("SHOW TABLES").result_rows}
    assert migrations.apply(ch) == []
    assert {"llm_calls", "scores", "drift_results", "feedback", "retrain_runs", "api_keys", "calls_1m"} <= tables_before
    versions = [r[0] for r in ch.query("SELECT version FROM schema_migrations FINAL ORDER BY version").result_rows]
    assert versions == [m.version for m in migrations.load()]


def test_retention_days_fills_the_ttl():
    statement = next(s for m in migrations.load() for s in m.statements(7) if "llm_calls" in s and "TTL" in s)
    assert "INTERVAL 7 DAY" in statement
