"""The call explorer's reads on a large store: the list (first page, filtered pages, a page
deep in the cursor, a text search, a score filter) and the call page (the call with its
scores and feedback, its trace tree, its session), on N stored calls (default 10 M) in chdb.

Rows are generated inside ClickHouse (INSERT ... SELECT from numbers()): 20 apps, 6 models,
30 days, prompts and answers of a few hundred characters, a score for every 10th call, a
vote for every 50th, four trace steps and a session for every call. Timing is the figure,
not the text. Baseline from the same run: the naive list query (ORDER BY ts DESC LIMIT over
the whole table, no time windows). Target: every explorer read < 200 ms (median).

Run: `.venv/bin/python -m bench.bench_explorer [--rows 10000000] [--repeat 7]`; figures
print and go to bench/out/explorer.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

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


def timed(fn, repeat: int) -> dict:
    fn()  # warm: caches, marks
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--path", default=None, help="chdb path to reuse (generated once)")
    args = parser.parse_args()
    path = args.path or tempfile.mkdtemp(prefix="lookout-bench-explorer-")
    settings = CommonSettings(clickhouse_dsn=f"chdb://{path}", clickhouse_database="bench")
    client = clickhouse.connect(settings)
    migrations.apply(client, 365)
    have = client.query("SELECT count() FROM llm_calls").result_rows[0][0]
    if have < args.rows:
        progress(f"generating {args.rows:,} calls under {path}")
        generate(client, args.rows)
    every = explore.CallQuery(apps=None)
    first = explore.search_calls(client, every, limit=50)
    deep = first
    for _ in range(20):  # 20 pages in: the cursor keeps each page as cheap as the first
        deep = explore.search_calls(client, every, limit=50, cursor=deep.next)
    sample = first.rows[0]
    call_id, app = uuid.UUID(sample["event_id"]), sample["app_id"]
    call_ts = datetime.fromisoformat(sample["ts"])
    detail = explore.call(client, app, call_id)
    assert detail is not None
    trace_id, around = client.query(
        "SELECT trace_id, ts FROM trace_spans WHERE app_id = 'app-0' ORDER BY ts DESC LIMIT 1").result_rows[0]
    figures = {
        "rows": client.query("SELECT count() FROM llm_calls").result_rows[0][0],
        "list_first_page": timed(lambda: explore.search_calls(client, every, limit=50), args.repeat),
        "list_one_app_one_model": timed(lambda: explore.search_calls(
            client, explore.CallQuery(apps=frozenset({"app-3"}), model="gpt-3"), limit=50), args.repeat),
        "list_page_21": timed(lambda: explore.search_calls(client, every, limit=50, cursor=deep.next), args.repeat),
        "list_errors": timed(lambda: explore.search_calls(
            client, explore.CallQuery(apps=None, status="error"), limit=50), args.repeat),
        "list_score_range": timed(lambda: explore.search_calls(
            client, explore.CallQuery(apps=frozenset({"app-3"}), score_name="toxicity", score_min=0.9), limit=50),
            args.repeat),
        "list_thumbs_down": timed(lambda: explore.search_calls(
            client, explore.CallQuery(apps=None, feedback="down"), limit=50), args.repeat),
        "list_text_search": timed(lambda: explore.search_calls(
            client, explore.CallQuery(apps=frozenset({"app-3"}), text="refunds"), limit=50), args.repeat),
        # What the call page asks for: the call (by app and id), then its trace and session near it.
        "call_page": timed(lambda: (explore.call(client, app, call_id, around=call_ts),
                                    explore.trace(client, None, trace_id, around=around),
                                    explore.session_calls(client, frozenset({app}), detail["session_id"],
                                                          around=around)), args.repeat),
        "call_only": timed(lambda: explore.call(client, app, call_id, around=call_ts), args.repeat),
        "call_without_a_time_hint": timed(lambda: explore.call(client, app, call_id), args.repeat),
        "trace_only": timed(lambda: explore.trace(client, None, trace_id, around=around), args.repeat),
        "trace_without_a_time_hint": timed(lambda: explore.trace(client, None, trace_id), args.repeat),
        "session_only": timed(lambda: explore.session_calls(client, frozenset({app}), detail["session_id"],
                                                            around=around), args.repeat),
        "session_without_a_time_hint": timed(lambda: explore.session_calls(client, frozenset({app}),
                                                                           detail["session_id"]), args.repeat),
        "baseline_naive_list": timed(lambda: client.query(
            "SELECT app_id, ts, event_id FROM llm_calls ORDER BY ts DESC, event_id LIMIT 51"), args.repeat),
    }
    print(json.dumps(figures, indent=2))
    OUT.mkdir(exist_ok=True)
    (OUT / "explorer.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
