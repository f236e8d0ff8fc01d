"""The explorer's reads by id (lookout.core.explore on id_lookup, migration 0017), on real
ClickHouse (chdb): a call with its scores and votes, a trace, a session, each found
whatever its age and read whole or said to be cut, scoped by app; the queries reach their
rows through the primary keys (EXPLAIN indexes=1), and the index is backfilled for rows
stored before the migration."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lookout.core import clickhouse, explore, migrations

NOW = datetime.now(UTC).replace(microsecond=0)
CALL_COLUMNS = ["event_id", "ts", "app_id", "model", "session_id", "trace_id", "input", "output", "status"]


def _call(app: str, ts: datetime, *, event_id: uuid.UUID | None = None, session: str = "", trace: str = "",
          model: str = "m1", text: str = "an answer") -> list[Any]:
    return [event_id or uuid.uuid4(), ts, app, model, session, trace,
            '[{"role":"user","content":"a question"}]', text, "ok"]


def _insert_calls(ch, rows: list[list[Any]]) -> None:
    ch.insert("llm_calls", rows, column_names=CALL_COLUMNS)


def _span(ch, app: str, trace: str, span: str, ts: datetime, *, session: str = "", parent: str = "",
          kind: str = "tool") -> None:
    ch.insert("trace_spans", [[uuid.uuid4(), app, trace, span, parent, ts, kind, f"step {span}", "ok", session]],
              column_names=["span_key", "app_id", "trace_id", "span_id", "parent_span_id", "ts", "kind", "name",
                            "status", "session_id"])


def _trace_id() -> str:
    return uuid.uuid4().hex


def _found(record: dict[str, Any] | None) -> dict[str, Any]:
    assert record is not None
    return record


def test_a_call_with_its_scores_and_votes_is_found_by_id_alone_however_old(ch):
    event_id = uuid.uuid4()
    old = NOW - timedelta(days=80)  # near the end of the 90 days kept
    _insert_calls(ch, [_call("shop", old, event_id=event_id, text="the old answer"),
                       *[_call("shop", NOW - timedelta(days=d)) for d in range(5)]])
    ch.insert("scores", [[uuid.uuid4(), event_id, old + timedelta(days=d), "shop", "m1", name, value, "judge"]
                         for d, name, value in ((0, "toxicity", 0.1), (3, "relevance", 0.8))],
              column_names=["score_id", "event_id", "ts", "app_id", "model", "name", "value", "evaluator"])
    ch.insert("feedback", [[uuid.uuid4(), event_id, NOW, "shop", "end_user", "u1", -1]],
              column_names=["feedback_id", "event_id", "ts", "app_id", "source", "author", "thumbs"])

    assert explore.apps_with_call(ch, None, event_id) == ["shop"]
    call = explore.call(ch, "shop", event_id)
    assert call is not None and call["output"] == "the old answer"
    assert [(s["name"], s["value"]) for s in call["scores"]] == [("relevance", 0.8), ("toxicity", 0.1)]
    assert [f["thumbs"] for f in call["feedback"]] == [-1]
    assert explore.call(ch, "shop", uuid.uuid4()) is None


def test_another_apps_call_trace_and_session_under_the_same_ids_stay_unseen(ch):
    shared_id, trace, session = uuid.uuid4(), _trace_id(), "conv-1"
    for app in ("shop", "bank"):
        _insert_calls(ch, [_call(app, NOW, event_id=shared_id, session=session, trace=trace, text=f"{app} answer")])
        _span(ch, app, trace, f"{app}-agent", NOW, session=session, kind="agent")
    shop = frozenset({"shop"})

    assert explore.apps_with_call(ch, shop, shared_id) == ["shop"]
    assert explore.apps_with_call(ch, frozenset({"other"}), shared_id) == []
    assert explore.apps_with_call(ch, None, shared_id) == ["bank", "shop"]
    assert _found(explore.call(ch, "shop", shared_id))["output"] == "shop answer"
    steps = _found(explore.trace(ch, shop, trace))["spans"]
    assert {s["app_id"] for s in steps} == {"shop"} and len(steps) == 2
    assert explore.trace(ch, frozenset({"other"}), trace) is None
    turns = explore.session_calls(ch, shop, session).rows
    assert [t["answer"] for t in turns] == ["shop answer"]
    assert explore.session_calls(ch, frozenset({"other"}), session).rows == []
    listed = explore.search_calls(ch, explore.CallQuery(apps=shop, session_id=session)).rows
    assert [c["answer"] for c in listed] == ["shop answer"]


def test_a_session_of_a_month_is_read_whole_page_by_page_in_order(ch):
    session = "long-conversation"
    # A turn a day for 30 days, two of them inside one agent run whose step names the
    # session (the calls themselves carry none), and unrelated calls around them.
    trace = _trace_id()
    rows = [_call("shop", NOW - timedelta(days=d, minutes=1), session=session) for d in range(30) if d not in (9, 10)]
    rows += [_call("shop", NOW - timedelta(days=d), trace=trace) for d in (9, 10)]
    rows += [_call("shop", NOW - timedelta(days=d, minutes=2)) for d in range(30)]
    _insert_calls(ch, rows)
    _span(ch, "shop", trace, "agent", NOW - timedelta(days=11), session=session, kind="agent")
    expected = [str(r[0]) for r in sorted(rows[:30], key=lambda r: (r[1], str(r[0])))]

    seen, cursor, pages = [], None, 0
    while True:
        page = explore.session_calls(ch, None, session, limit=7, cursor=cursor)
        seen += [t["event_id"] for t in page.rows]
        pages += 1
        cursor = page.next
        assert not page.truncated
        if cursor is None:
            break
    assert seen == expected and pages == 5


def test_a_session_with_more_agent_runs_than_are_searched_says_it_was_cut(ch, monkeypatch):
    monkeypatch.setattr(explore, "TRACES_PER_SESSION_MAX", 3)
    session = "many-runs"
    traces = [_trace_id() for _ in range(5)]
    for i, trace in enumerate(traces):
        _span(ch, "shop", trace, "agent", NOW - timedelta(hours=5 - i), session=session, kind="agent")
        _insert_calls(ch, [_call("shop", NOW - timedelta(hours=5 - i), trace=trace)])
    cut = explore.session_calls(ch, None, session)
    assert cut.truncated and len(cut.rows) == 3  # the runs searched: the first three

    monkeypatch.setattr(explore, "TRACES_PER_SESSION_MAX", 5)
    whole = explore.session_calls(ch, None, session)
    assert not whole.truncated and len(whole.rows) == 5


def test_a_trace_longer_than_its_cap_is_cut_and_says_what_is_stored(ch):
    trace = _trace_id()
    _span(ch, "shop", trace, "root", NOW - timedelta(seconds=10), kind="agent")
    for i in range(7):
        _span(ch, "shop", trace, f"tool-{i}", NOW - timedelta(seconds=9 - i), parent="root")
    # Three calls the SDK stored with the trace id and no span of their own.
    _insert_calls(ch, [_call("shop", NOW - timedelta(seconds=1, milliseconds=i), trace=trace) for i in range(3)])

    whole = _found(explore.trace(ch, None, trace))
    assert not whole["truncated"] and len(whole["spans"]) == 11
    assert "spans_total" not in whole

    cut = _found(explore.trace(ch, None, trace, max_spans=5))
    assert cut["truncated"] and len(cut["spans"]) == 5
    assert (cut["spans_total"], cut["calls_total"]) == (8, 3)
    # A cap of 9 neither the spans (8) nor the calls (3) pass, but the 11 steps they make
    # together do: the tree is cut, and says so.
    nine = _found(explore.trace(ch, None, trace, max_spans=9))
    assert nine["truncated"] and len(nine["spans"]) == 9


class _Recorder:
    """A real client that keeps every SELECT it was asked, with its parameters."""

    def __init__(self, client):
        self.client = client
        self.selects: list[tuple[str, dict]] = []

    @property
    def database(self) -> str | None:
        return self.client.database

    def query(self, sql: str, parameters: dict | None = None, **kwargs: Any) -> Any:
        if sql.lstrip().upper().startswith(("SELECT", "WITH")):
            self.selects.append((sql, dict(parameters or {})))
        return self.client.query(sql, parameters=parameters, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.command(*args, **kwargs)

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.insert(*args, **kwargs)


def _key_granules(client, sql: str, parameters: dict) -> list[tuple[str, int, int]]:
    """(table, granules its primary key selected, granules there) per table read."""
    plan = [r[0].strip(" │└─") for r in client.query(f"EXPLAIN indexes=1 {sql}", parameters=parameters).result_rows]
    found, table = [], None
    for i, line in enumerate(plan):
        if line.startswith("ReadFromMergeTree"):
            table = line.split("(")[-1].rstrip(")").split(".")[-1]
        elif line == "PrimaryKey" and table:
            granules = next(x for x in plan[i:] if x.startswith("Granules:"))
            selected, total = map(int, re.findall(r"\d+", granules)[:2])
            found.append((table, selected, total))
    return found


_PART = "groupArray(tuple(*)) FROM ("


def _with_parts(sql: str) -> list[str]:
    """The query and each part it gathers as an array of rows (a scalar subquery, which runs
    before the plan and so is not in EXPLAIN's), with the query's WITH clause."""
    found = re.match(r"WITH (.*?) AS the_app ", sql)
    prefix = found.group(0) if found else ""
    parts, at = [sql], sql.find(_PART)
    while at >= 0:
        start = depth = at + len(_PART)
        depth = 1
        end = start
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            end += 1
        parts.append(prefix + "SELECT * FROM (" + sql[start:end])
        at = sql.find(_PART, end)
    return parts


def test_the_reads_by_id_reach_their_rows_through_the_primary_keys(ch):
    # 200 000 calls of one app over 3 days (dozens of granules a day), each in a session
    # and a trace; spans for some traces; then every query the call page makes.
    rows = 200_000
    ch.command(
        "INSERT INTO llm_calls (event_id, ts, app_id, model, session_id, trace_id, output) "
        "SELECT generateUUIDv4(), now64(3) - toIntervalSecond(number), 'shop', 'm1', "
        "concat('s-', toString(intDiv(number, 4))), lower(hex(cityHash64(number))) || '0000000000000000', "
        f"'an answer' FROM numbers({rows})")
    ch.command(
        "INSERT INTO trace_spans (span_key, app_id, trace_id, span_id, ts, kind, session_id) "
        "SELECT generateUUIDv4(), 'shop', lower(hex(cityHash64(number))) || '0000000000000000', 'agent', "
        "now64(6) - toIntervalSecond(number), 'agent', concat('s-', toString(intDiv(number, 4))) "
        f"FROM numbers({rows}) WHERE number % 3 = 0")
    event_id, session, trace = ch.query(
        "SELECT event_id, session_id, trace_id FROM llm_calls WHERE ts < now() - INTERVAL 2 DAY "
        "ORDER BY ts DESC LIMIT 1").result_rows[0]
    at = NOW - timedelta(days=2)
    ch.insert("scores", [[uuid.uuid4(), event_id, at, "shop", "relevance", 0.7]],
              column_names=["score_id", "event_id", "ts", "app_id", "name", "value"])
    ch.insert("feedback", [[uuid.uuid4(), event_id, at, "shop", "end_user", "u1", 1]],
              column_names=["feedback_id", "event_id", "ts", "app_id", "source", "author", "thumbs"])
    ch.insert("review_tasks", [[event_id, "shop", "m1", "judge", "low relevance", 0.5, at]],
              column_names=["event_id", "app_id", "model", "kind", "reason", "severity", "created_at"])
    probe = _Recorder(ch)
    assert explore.apps_with_call(probe, None, event_id) == ["shop"]
    shown = _found(explore.call(probe, "shop", event_id))
    assert (len(shown["scores"]), len(shown["feedback"]), len(shown["review_tasks"])) == (1, 1, 1)
    assert _found(explore.call(probe, None, event_id))["event_id"] == str(event_id)
    assert explore.trace(probe, None, trace) is not None
    assert explore.session_calls(probe, None, session).rows
    assert explore.search_calls(probe, explore.CallQuery(apps=None, session_id=session)).rows

    reads = [(part, table, selected, total) for sql, params in probe.selects for part in _with_parts(sql)
             for table, selected, total in _key_granules(ch, part, params)]
    assert {table for _, table, _, _ in reads} >= {"id_lookup", "llm_calls", "trace_spans", "scores", "feedback",
                                                  "review_tasks", "call_previews"}
    for sql, table, selected, total in reads:
        assert selected <= 8, (table, selected, total, sql)
    marks = ch.query("SELECT table, sum(marks) FROM system.parts WHERE database = currentDatabase() AND active "
                     "GROUP BY table").result_rows
    assert dict(marks)["llm_calls"] >= 20 and dict(marks)["id_lookup"] >= 200  # what a scan would read


def _migrated_before(ch_settings, version: int):
    """A store migrated up to the migration before `version`."""
    client = clickhouse.connect(ch_settings)
    client.command("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
                   "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version")
    for m in migrations.load():
        if m.version < version:
            for statement in m.statements(ch_settings.retention_days):
                client.command(statement)
            client.insert("schema_migrations", [[m.version, m.name]], column_names=["version", "name"])
    return client


@pytest.fixture
def before_0017(ch_settings):
    yield _migrated_before(ch_settings, 17)
    clickhouse.connect(ch_settings).command(f"DROP DATABASE IF EXISTS {ch_settings.clickhouse_database}")


@pytest.fixture
def before_0018(ch_settings):
    yield _migrated_before(ch_settings, 18)
    clickhouse.connect(ch_settings).command(f"DROP DATABASE IF EXISTS {ch_settings.clickhouse_database}")


def test_calls_traces_and_sessions_stored_before_the_index_are_backfilled_once(before_0017, ch_settings):
    ch = before_0017
    event_id, trace, session = uuid.uuid4(), _trace_id(), "conv-old"
    _insert_calls(ch, [_call("shop", NOW - timedelta(days=3), event_id=event_id, trace=trace, text="stored before")])
    _span(ch, "shop", trace, "agent", NOW - timedelta(days=3), session=session, kind="agent")
    ch.insert("scores", [[uuid.uuid4(), event_id, NOW, "shop", "relevance", 0.7]],
              column_names=["score_id", "event_id", "ts", "app_id", "name", "value"])
    assert 17 in migrations.apply(ch, ch_settings.retention_days)

    def read() -> tuple:
        call = _found(explore.call(ch, "shop", event_id))
        return (call["output"], [s["value"] for s in call["scores"]],
                [s["kind"] for s in _found(explore.trace(ch, None, trace))["spans"]],
                [t["event_id"] for t in explore.session_calls(ch, None, session).rows])

    expected = ("stored before", [0.7], ["agent", "llm"], [str(event_id)])
    assert read() == expected
    # A re-run of the migration (a crash before it was recorded) only duplicates keys,
    # which the reads collapse.
    (migration,) = [m for m in migrations.load() if m.version == 17]
    for statement in migration.statements(ch_settings.retention_days):
        ch.command(statement)
    assert read() == expected


def _listed(ch) -> list[str]:
    return [r["answer"] for r in explore.search_calls(ch, explore.CallQuery(apps=None), limit=20).rows]


def test_calls_stored_before_the_previews_are_listed_after_a_backfill_that_resumes_where_it_stopped(
        before_0018, ch_settings):
    ch = before_0018
    ages = {"today": timedelta(hours=2), "3 days": timedelta(days=3), "20 days": timedelta(days=20),
            "60 days": timedelta(days=60)}
    _insert_calls(ch, [_call("shop", NOW - age, text=f"stored {name} ago") for name, age in ages.items()])
    (migration,) = [m for m in migrations.load() if m.version == 18]
    statements = migration.statements(ch_settings.retention_days)
    # A first start that crashed after the backfill's first two slices (the last day, the
    # week before) were recorded, and lost their rows (the worst case): the re-run resumes
    # at the third slice and does not redo those two.
    for statement in statements:
        if statement.startswith("INSERT INTO call_previews"):
            break
        ch.command(statement)
    ch.insert("call_previews_backfill", [[1], [2]], column_names=["slice"])
    for statement in statements:
        ch.command(statement)
    assert _listed(ch) == ["stored 20 days ago", "stored 60 days ago"]
    assert sorted(r[0] for r in ch.query("SELECT DISTINCT slice FROM call_previews_backfill").result_rows) == [
        1, 2, 3, 4, 5, 6]

    # A store that starts afresh: every age is backfilled, newest first, with its previews;
    # a re-run reads nothing again (every slice recorded) and the list is unchanged.
    ch.command("TRUNCATE TABLE call_previews")
    ch.command("TRUNCATE TABLE call_previews_backfill")
    assert 18 in migrations.apply(ch, ch_settings.retention_days)
    expected = [f"stored {name} ago" for name in ages]
    assert _listed(ch) == expected
    (row,) = explore.search_calls(ch, explore.CallQuery(apps=None), limit=1).rows
    assert (row["question"], row["app_id"], row["status"]) == ("a question", "shop", "ok")
    for statement in statements:
        ch.command(statement)
    assert _listed(ch) == expected
    # Calls stored after the migration reach the list through the view, at once.
    _insert_calls(ch, [_call("shop", NOW, text="stored now")])
    assert _listed(ch)[0] == "stored now"


def test_a_list_scoped_to_many_apps_or_to_one_shows_those_apps_calls_only_newest_first(ch):
    # Scoped to more than FEW_APPS apps the keys come from call_previews (time order), to
    # one app from llm_calls (its app_id prefix): both see their apps' calls only.
    apps = [f"app-{i}" for i in range(explore.FEW_APPS + 3)]
    _insert_calls(ch, [_call(app, NOW - timedelta(minutes=i * len(apps) + n), text=f"{app} {i}")
                       for n, app in enumerate(apps) for i in range(3)])
    many = frozenset(apps[:explore.FEW_APPS + 1])
    listed = explore.search_calls(ch, explore.CallQuery(apps=many), limit=200).rows
    assert {r["app_id"] for r in listed} == many and len(listed) == 3 * len(many)
    assert [r["ts"] for r in listed] == sorted((r["ts"] for r in listed), reverse=True)
    one = explore.search_calls(ch, explore.CallQuery(apps=frozenset({apps[-1]})), limit=200).rows
    assert [r["answer"] for r in one] == [f"{apps[-1]} {i}" for i in range(3)]
    assert explore.search_calls(ch, explore.CallQuery(apps=frozenset({"nobody"}))).rows == []
    # Paged two by two through the previews, the same calls in the same order.
    paged, cursor = [], None
    while True:
        page = explore.search_calls(ch, explore.CallQuery(apps=many), limit=2, cursor=cursor)
        paged += page.rows
        if page.next is None:
            break
        cursor = page.next
    assert [r["event_id"] for r in paged] == [r["event_id"] for r in listed]
