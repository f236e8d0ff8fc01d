"""The call explorer's reads on a large store: the list (first page, filtered pages, a page
deep in the cursor, a text search, a score filter) and the call page (the call with its
scores and feedback, its trace tree, its session), on N stored calls (default 10 M) in chdb.

Rows are generated inside ClickHouse (INSERT ... SELECT from numbers()): 20 apps, 6 models,
30 days, prompts and answers of a few hundred characters, a score for every 10th call, a
vote for every 50th, four trace steps and a session for every call. Timing is the figure,
not the text. Baselines from the same run: the naive list query (ORDER BY ts DESC LIMIT over
the whole table, no time windows) and a call by id through the bloom-filter index on
event_id (how a call was read before the id_lookup of migration 0017). A store generated
before migration 0018 gets its call_previews backfilled at the first start (timed in the
"migrations applied" line). Target: every
explorer read < 200 ms (median). `granules` reports, from EXPLAIN indexes=1, what the
primary keys select for the by-id reads.

Run: `.venv/bin/python -m bench.bench_explorer [--rows 10000000] [--repeat 7] [--path DIR]
[--compare-with OLD_EXPLORE_PY]`; figures print and go to bench/out/explorer.json. With
--compare-with (e.g. `git show main:core/lookout/core/explore.py > /tmp/explore_main.py`) every
read is timed through both revisions, taking turns, as `<read>` and `<read>__compared`.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import ModuleType

from lookout.core import clickhouse, explore, migrations
from lookout.core.settings import CommonSettings

OUT = Path(__file__).parent / "out"
APPS, MODELS, DAYS = 20, 6, 30


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def generate(client, rows: int) -> None:
    span = DAYS * 86_400_000
    # ts spread evenly over DAYS ending now; ids derived from the row number so later
    # inserts (scores, feedback, steps) can name their call.
    common = (
        "toUUID(concat('00000000-0000-4000-8000-', lpad(hex(number), 12, '0'))) AS event_id, "
        f"now64(3) - toIntervalMillisecond(intDiv(number * {span}, {rows})) AS ts, "
        f"concat('app-', toString(number % {APPS})) AS app_id"
    )
    started = time.perf_counter()
    client.command(
        "INSERT INTO llm_calls (event_id, ts, app_id, environment, provider, model, model_version, input, output, "
        "tokens_in, tokens_out, latency_ms, status, error, cost_usd, cost_source, session_id, trace_id, span_id, "
        "metadata, ingested_at) "
        f"SELECT {common}, 'production', 'openai', concat('gpt-', toString(number % {MODELS})), "
        "concat('v', toString(number % 3)), "
        "concat('[{\"role\":\"user\",\"content\":\"question ', toString(number), ' about ', "
        "arrayElement(['weather','billing','shipping','refunds','passwords','invoices'], number % 6 + 1), "
        "' and the ', repeat('details ', 20), '\"}]'), "
        "concat('Answer ', toString(number), ': ', repeat('the order ships in three days ', 8)), "
        "100 + number % 900, 20 + number % 300, 200 + number % 3000, "
        "if(number % 97 = 0, 'error', 'ok'), if(number % 97 = 0, 'upstream timeout', ''), 0.0004, 'price_table', "
        "concat('s-', toString(intDiv(number, 8))), lower(hex(cityHash64(intDiv(number, 1)))) || "
        "lower(hex(cityHash64(number + 1))), lower(hex(cityHash64(number))), "
        "map('otlp.scope', 'openinference.instrumentation.openai', 'otlp.span_name', 'ChatCompletion'), now64(3) "
        f"FROM numbers({rows}) SETTINGS max_insert_threads = 2"
    )
    progress(f"{rows:,} calls in {time.perf_counter() - started:.0f} s")
    client.command(
        "INSERT INTO scores (score_id, event_id, ts, app_id, model, name, value, label, source, evaluator, "
        "evaluator_version, explanation, cost_usd) "
        f"SELECT generateUUIDv4(), {common}, concat('gpt-', toString(number % {MODELS})), 'toxicity', "
        "(number % 100) / 100, '', 'model', 'detoxify', '', '', 0 "
        f"FROM numbers({rows}) WHERE number % 10 = 0"
    )
    client.command(
        "INSERT INTO feedback (feedback_id, event_id, ts, app_id, source, author, thumbs, labels, "
        "corrected_output, comment) "
        f"SELECT generateUUIDv4(), {common}, 'end_user', 'u', if(number % 100 = 0, -1, 1), [], '', '' "
        f"FROM numbers({rows}) WHERE number % 50 = 0"
    )
    client.command(
        "INSERT INTO trace_spans (span_key, app_id, trace_id, span_id, parent_span_id, ts, duration_ms, kind, name, "
        "status, error, environment, session_id, user_id, event_id, provider, model, input, output, attributes, "
        "source, source_version, ingested_at) "
        f"SELECT generateUUIDv4(), concat('app-', toString(intDiv(number, 4) % {APPS})), "
        "lower(hex(cityHash64(intDiv(number, 4)))) || lower(hex(cityHash64(intDiv(number, 4) + 1))), "
        "lower(hex(cityHash64(number * 7))), if(number % 4 = 0, '', lower(hex(cityHash64(intDiv(number, 4) * 28)))), "
        f"now64(6) - toIntervalMillisecond(intDiv(intDiv(number, 4) * {span}, {rows})), 50, "
        "arrayElement(['agent', 'tool', 'retrieval', 'tool'], number % 4 + 1), 'step', 'ok', '', 'production', "
        "concat('s-', toString(intDiv(intDiv(number, 4), 8))), '', NULL, '', '', 'args', 'result', map(), 'bench', "
        f"'1', now64(3) FROM numbers({rows * 4}) WHERE intDiv(number, 4) % 10 = 0"
    )
    progress(f"all rows in {time.perf_counter() - started:.0f} s")


def timed(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, dict[str, float]]:
    """Median and max wall ms of each fn, and its median CPU ms (chdb runs in this process,
    so the process's CPU time is the query's, whatever else loads the machine); several fns
    take turns, run after run, so a load that comes and goes falls on each alike."""
    for fn in fns.values():
        fn()  # warm: caches, marks
    times: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
            cpu[name].append((time.process_time() - start_cpu) * 1000)
    return {name: {"median_ms": round(statistics.median(t), 1), "max_ms": round(max(t), 1),
                   "cpu_ms": round(statistics.median(cpu[name]), 1)} for name, t in times.items()}


class Metered:
    """The bench's client, counting the queries of a read and the rows and bytes ClickHouse
    read for them (each result's summary): what a read costs, independent of the load."""

    def __init__(self, client) -> None:
        self.client = client
        self.queries = self.rows = self.bytes = 0

    @property
    def database(self) -> str | None:
        return self.client.database

    def query(self, *args, **kwargs):
        result = self.client.query(*args, **kwargs)
        summary = getattr(result, "summary", None) or {}
        self.queries += 1
        self.rows += int(summary.get("read_rows", 0))
        self.bytes += int(summary.get("read_bytes", 0))
        return result

    def command(self, *args, **kwargs):
        return self.client.command(*args, **kwargs)

    def insert(self, *args, **kwargs):
        return self.client.insert(*args, **kwargs)

    def cost(self, fn: Callable[[], object]) -> dict[str, int]:
        self.queries = self.rows = self.bytes = 0
        fn()
        return {"queries": self.queries, "read_rows": self.rows, "read_bytes": self.bytes}


def load_compared(path: str) -> ModuleType:
    """Another revision of lookout.core.explore (e.g. `git show main:core/lookout/core/explore.py`),
    loaded beside this one, to time both on the same store in the same run."""
    spec = importlib.util.spec_from_file_location("lookout.core._explore_compared", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _granules(client, sql: str, parameters: dict) -> dict[str, str]:
    """Per table the query reads: granules selected by its primary key / all granules."""
    plan = [r[0] for r in client.query(f"EXPLAIN indexes=1 {sql}", parameters=parameters).result_rows]
    found, table, in_key = {}, None, False
    for line in plan:
        text = line.strip(" │└─")
        if text.startswith("ReadFromMergeTree"):
            table = text.split("(")[-1].rstrip(")").split(".")[-1]
        elif text == "PrimaryKey":
            in_key = True
        elif in_key and text.startswith("Granules:") and table:
            found[table] = text.split(":", 1)[1].strip()
            in_key = False
    return found


def granules(client, app: str, call_id: uuid.UUID, trace_id: str, session_id: str) -> dict[str, dict[str, str]]:
    """What the by-id reads cost in granules, from EXPLAIN indexes=1 (chdb)."""
    keys = client.query("SELECT app_id, sort, ts, row_id FROM id_lookup WHERE kind = 'call' AND id = {id:String}",
                        parameters={"id": str(call_id)}).result_rows
    return {
        "call_keys": _granules(client, "SELECT kind, sort, ts, row_id FROM id_lookup WHERE kind IN ('call', 'score', "
                               "'vote') AND id = {id:String} AND app_id = {a:String}", {"id": str(call_id), "a": app}),
        "call_row": _granules(client, "SELECT * FROM llm_calls WHERE (app_id, model, ts, event_id) IN "
                              "{k:Array(Tuple(String, String, DateTime64(3, 'UTC'), UUID))}",
                              {"k": [(a, m, t, str(r)) for a, m, t, r in keys]}),
        "call_row_by_bloom_index": _granules(client, "SELECT * FROM llm_calls WHERE app_id = {a:String} "
                                             "AND event_id = {e:UUID}", {"a": app, "e": str(call_id)}),
        "trace_keys": _granules(client, "SELECT * FROM id_lookup WHERE kind IN ('span', 'trace') AND id = {t:String}",
                                {"t": trace_id}),
        "session_keys": _granules(client, "SELECT * FROM id_lookup WHERE (kind = 'session' AND id = {s:String}) OR "
                                  "(kind = 'trace' AND id IN (SELECT sort FROM id_lookup WHERE kind = 'span_session' "
                                  "AND id = {s:String}))", {"s": session_id}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--path", default=None, help="chdb path to reuse (generated once)")
    parser.add_argument("--compare-with", default=None, metavar="EXPLORE_PY",
                        help="another revision's explore.py to time beside this one (reads `<name>__compared`)")
    args = parser.parse_args()
    path = args.path or tempfile.mkdtemp(prefix="lookout-bench-explorer-")
    settings = CommonSettings(clickhouse_dsn=f"chdb://{path}", clickhouse_database="bench")
    client = clickhouse.connect(settings)
    started = time.perf_counter()
    applied = migrations.apply(client, 365)
    if applied:
        progress(f"migrations {applied} applied in {time.perf_counter() - started:.1f} s")
    have = client.query("SELECT count() FROM llm_calls").result_rows[0][0]
    if have < args.rows:
        progress(f"generating {args.rows:,} calls under {path}")
        generate(client, args.rows)
    every = explore.CallQuery(apps=None)
    first = explore.search_calls(client, every, limit=50)
    deep = first
    for _ in range(20):  # 20 pages in: the cursor keeps each page as cheap as the first
        deep = explore.search_calls(client, every, limit=50, cursor=deep.next)
    page_21 = deep.next
    assert page_21 is not None
    sample = first.rows[0]
    call_id, app = uuid.UUID(sample["event_id"]), sample["app_id"]
    detail = explore.call(client, app, call_id)
    assert detail is not None
    trace_id, trace_ts = client.query(
        "SELECT trace_id, ts FROM trace_spans WHERE app_id = 'app-0' ORDER BY ts DESC LIMIT 1").result_rows[0]
    # A session whose calls also come through its traces' steps (the generated spans name
    # sessions too), for the session read.
    session_id, session_ts = client.query(
        "SELECT session_id, ts FROM trace_spans WHERE app_id = 'app-0' AND session_id != '' ORDER BY ts DESC LIMIT 1"
    ).result_rows[0]
    old_call = client.query(  # a call near the store's oldest end: its age should cost nothing
        "SELECT event_id FROM llm_calls WHERE app_id = 'app-3' AND ts < now() - INTERVAL 25 DAY "
        "ORDER BY ts DESC LIMIT 1").result_rows[0][0]

    def reads(mod: ModuleType, client: object) -> dict[str, Callable[[], object]]:
        """The explorer's reads through module `mod` (this revision or the compared one)."""
        # Before id_lookup the UI passed a time hint (the ts of the row it came from): given
        # to that revision, its best case.
        hinted = "around" in inspect.signature(mod.call).parameters
        near = {"around": datetime.fromisoformat(sample["ts"])} if hinted else {}
        near_trace = {"around": trace_ts} if hinted else {}
        near_session = {"around": session_ts} if hinted else {}

        def call_page() -> None:
            # What the call page asks for, as an admin opening a call by its id alone (a
            # link from a panel or a drift result): since migration 0018 the call's app is
            # looked up in the call's own query, before it by a query of its own.
            if "apps" in inspect.signature(mod.call).parameters:
                shown = mod.call(client, None, call_id, apps=None)
            else:
                (found,) = mod.apps_with_call(client, None, call_id)
                shown = mod.call(client, found, call_id, **near)
            assert shown is not None
            mod.trace(client, None, shown["trace_id"], **near)
            mod.session_calls(client, None, shown["session_id"], limit=200, **near)

        def q(**kwargs) -> object:
            return mod.CallQuery(**kwargs)

        return {
            "list_first_page": lambda: mod.search_calls(client, q(apps=None), limit=50),
            "list_one_app_one_model": lambda: mod.search_calls(
                client, q(apps=frozenset({"app-3"}), model="gpt-3"), limit=50),
            "list_page_21": lambda: mod.search_calls(client, q(apps=None), limit=50, cursor=mod.Cursor(
                page_21.ts, page_21.event_id, page_21.app_id)),
            "list_errors": lambda: mod.search_calls(client, q(apps=None, status="error"), limit=50),
            "list_score_range": lambda: mod.search_calls(
                client, q(apps=frozenset({"app-3"}), score_name="toxicity", score_min=0.9), limit=50),
            "list_thumbs_down": lambda: mod.search_calls(client, q(apps=None, feedback="down"), limit=50),
            "list_text_search": lambda: mod.search_calls(client, q(apps=frozenset({"app-3"}), text="refunds"),
                                                         limit=50),
            "list_one_session": lambda: mod.search_calls(client, q(apps=None, session_id=detail["session_id"]),
                                                         limit=50),
            "call_page": call_page,
            "call_only": lambda: mod.call(client, app, call_id, **near),
            "call_25_days_old": lambda: mod.call(client, "app-3", old_call),
            "trace_only": lambda: mod.trace(client, None, trace_id, **near_trace),
            "session_only": lambda: mod.session_calls(client, None, session_id, limit=200, **near_session),
        }

    compared = load_compared(args.compare_with) if args.compare_with else None
    ours, theirs = reads(explore, client), reads(compared, client) if compared else {}
    metered = Metered(client)
    costs = {**reads(explore, metered), **{f"{k}__compared": v for k, v in
                                          (reads(compared, metered) if compared else {}).items()}}
    figures: dict[str, object] = {"rows": client.query("SELECT count() FROM llm_calls").result_rows[0][0]}
    for name, fn in ours.items():
        pair = {name: fn, **({f"{name}__compared": theirs[name]} if name in theirs else {})}
        for key, value in timed(pair, args.repeat).items():
            figures[key] = {**value, **metered.cost(costs[key])}
    figures.update(timed({
        "baseline_naive_list": lambda: client.query(
            "SELECT app_id, ts, event_id FROM llm_calls ORDER BY ts DESC, event_id LIMIT 51"),
        # A call by id before id_lookup: its row through the bloom-filter index on event_id,
        # every partition (what a read without a time hint did).
        "baseline_call_by_bloom_index": lambda: client.query(
            "SELECT * FROM llm_calls WHERE app_id = {a:String} AND event_id = {e:UUID} LIMIT 1",
            parameters={"a": app, "e": str(call_id)}),
    }, args.repeat))
    figures["granules"] = granules(client, app, call_id, trace_id, session_id)
    print(json.dumps(figures, indent=2))
    OUT.mkdir(exist_ok=True)
    (OUT / "explorer.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
