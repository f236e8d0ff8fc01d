"""Every dashboard panel's SQL on a large store (chdb, this machine): target < 200 ms each.

A fresh chdb database gets N calls (default 10 000 000) generated inside ClickHouse with
INSERT ... SELECT FROM numbers() (the calls_1m and versions_1m materialized views fill as in
production: scores and votes carry their call's model, version and environment as the
judge and the thumbs service send them, and a changed vote names the one it replaces),
spread over --days days ending now, with realistic shapes: 5 apps x 2 models (skewed
traffic), 2 environments, log-normal latency, ~1.5% errors, two model versions per stream
(the newer one for the last third), toxicity scores (2 labels) on 30% of calls, two judge
rubrics on 5%, thumbs on 2% (a tenth of them changed later), review tasks on 0.5% (most
done), drift results per stream every 15 minutes, retrain runs and dead letters.

Then each panel's SQL, with the plugin's macros expanded for the last 24 h and every app,
model and environment (All), runs 3 times; the median is reported per panel.

Run: `.venv/bin/python -m bench.bench_dashboards [--rows 10000000] [--days 7]`.
Results print and go to bench/out/dashboards.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lookout.core import clickhouse, migrations
from lookout.core.settings import CommonSettings
from lookout.dashboards import macros
from lookout.dashboards.macros import ALL, QueryContext
from lookout.dashboards.panels import PANELS

OUT = Path(__file__).parent / "out"
TARGET_MS = 200.0
CHUNK = 2_000_000


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def fill(client, rows: int, days: int, now: datetime) -> None:
    end = int(now.timestamp())
    span = days * 86400
    apps = "['support-bot', 'search', 'code-assistant', 'summarizer', 'agent']"
    models = "['gpt-4o-mini', 'claude-3-5-haiku']"
    for offset in range(0, rows, CHUNK):
        n = min(CHUNK, rows - offset)
        t0 = time.perf_counter()
        # Row i sits at an even spacing over the span; hashes of i pick its other values.
        client.command(f"""
            INSERT INTO llm_calls (event_id, ts, app_id, environment, provider, model, model_version,
                prompt_version, output, tokens_in, tokens_out, latency_ms, ttft_ms, status, error, cost_usd,
                user_id, session_id, ingested_at)
            SELECT
                generateUUIDv4(number) AS event_id,
                toDateTime64({end - span} + (number * {span}) / {rows}, 3, 'UTC') AS ts,
                {apps}[1 + toUInt8(floor(5 * pow((cityHash64(number, 1) % 1000) / 1000, 1.8)))] AS app_id,
                if(cityHash64(number, 2) % 10 < 8, 'prod', 'staging') AS environment,
                'openai' AS provider,
                {models}[1 + (cityHash64(number, 3) % 3 = 0)] AS model,
                if(ts > toDateTime64({end - span // 3}, 3, 'UTC'), 'v2', 'v1') AS model_version,
                'p1' AS prompt_version,
                'a short answer' AS output,
                80 + cityHash64(number, 4) % 900 AS tokens_in,
                10 + cityHash64(number, 5) % 400 AS tokens_out,
                exp(6.3 + 0.4 * sqrt(-2 * log((cityHash64(number, 6) % 1000000 + 1) / 1000001))
                    * cos(2 * pi() * (cityHash64(number, 7) % 1000) / 1000)) AS latency_ms,
                latency_ms * 0.25 AS ttft_ms,
                if(cityHash64(number, 8) % 1000 < 15, 'error', 'ok') AS status,
                if(status = 'error', 'upstream 503', '') AS error,
                (tokens_in * 0.15 + tokens_out * 0.6) / 1e6 AS cost_usd,
                concat('u', toString(cityHash64(number, 9) % 50000)) AS user_id,
                concat('s', toString(cityHash64(number, 10) % 200000)) AS session_id,
                ts AS ingested_at
            FROM numbers({offset}, {n})
        """)
        progress(f"calls {offset + n:,}/{rows:,} ({time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    client.command("""
        INSERT INTO scores (score_id, event_id, ts, app_id, model, name, value, label, source, evaluator,
            evaluator_version, explanation, cost_usd, model_version, environment)
        SELECT generateUUIDv4(cityHash64(event_id, name)), event_id, ts + INTERVAL 2 SECOND, app_id, model, name,
            if(cityHash64(event_id, name) % 100 < 3, 0.9, (cityHash64(event_id, name) % 300) / 1000),
            '', 'model', 'detoxify', '1', '', 0, model_version, environment
        FROM llm_calls ARRAY JOIN ['toxicity.toxicity', 'toxicity.insult'] AS name
        WHERE cityHash64(event_id) % 10 < 3
    """)
    client.command("""
        INSERT INTO scores (score_id, event_id, ts, app_id, model, name, value, label, source, evaluator,
            evaluator_version, explanation, cost_usd, model_version, environment)
        SELECT generateUUIDv4(cityHash64(event_id, name)), event_id, ts + INTERVAL 8 SECOND, app_id, model, name,
            (cityHash64(event_id, name) % 1000) / 1000, '', 'llm_judge', 'judge', '1', '', 0.0002, model_version,
            environment
        FROM llm_calls ARRAY JOIN ['judge.relevance', 'judge.faithfulness'] AS name
        WHERE cityHash64(event_id) % 100 >= 95
    """)
    progress(f"scores ({time.perf_counter() - t0:.1f} s)")
    client.command("""
        INSERT INTO feedback (feedback_id, event_id, ts, app_id, source, author, thumbs, model, model_version,
            environment, call_ts)
        SELECT generateUUIDv4(cityHash64(event_id, 'f')), event_id, ts + INTERVAL 40 SECOND, app_id, 'end_user',
            user_id, if(cityHash64(event_id, 'v') % 100 < 12, -1, 1), model, model_version, environment, ts
        FROM llm_calls WHERE cityHash64(event_id, 'fb') % 100 < 2
    """)
    client.command("""
        INSERT INTO feedback (feedback_id, event_id, ts, app_id, source, author, thumbs, model, model_version,
            environment, call_ts, replaces_thumbs)
        SELECT generateUUIDv4(cityHash64(event_id, 'f2')), event_id, ts + INTERVAL 120 SECOND, app_id, 'end_user',
            user_id, -1, model, model_version, environment, ts, if(cityHash64(event_id, 'v') % 100 < 12, -1, 1)
        FROM llm_calls WHERE cityHash64(event_id, 'fb') % 1000 < 2
    """)
    client.command("""
        INSERT INTO review_tasks (event_id, app_id, model, kind, reason, severity, created_at)
        SELECT event_id, app_id, model, 'score', 'toxicity', 0.5, ts + INTERVAL 5 SECOND
        FROM llm_calls WHERE cityHash64(event_id, 'rt') % 1000 < 5
    """)
    client.command("""
        INSERT INTO review_done (event_id, app_id, reviewer, feedback_id, needed, ts)
        SELECT event_id, app_id, concat('r', toString(cityHash64(event_id) % 20)),
            generateUUIDv4(cityHash64(event_id, 'rd')), 1, created_at + INTERVAL 2 HOUR
        FROM review_tasks WHERE cityHash64(event_id, 'done') % 10 < 8 AND created_at < now64() - INTERVAL 2 HOUR
    """)
    client.command(f"""
        INSERT INTO drift_results (result_id, ts, app_id, model, window_start, window_end, signal, method, statistic,
            p_value, threshold, drifted, reference_size, current_size)
        SELECT generateUUIDv4(number), w, app_id, model, w - INTERVAL 15 MINUTE, w, signal, 'mmd',
            0.1, 0.3, 0.01, cityHash64(number) % 10 = 0, 500, 200
        FROM (SELECT number, toDateTime64({end} - (number % {days * 96}) * 900, 3, 'UTC') AS w,
                     {apps}[1 + intDiv(number, {days * 96}) % 5] AS app_id,
                     {models}[1 + intDiv(number, {days * 96 * 5}) % 2] AS model,
                     ['embedding', 'prompt_tokens'][1 + intDiv(number, {days * 96 * 10}) % 2] AS signal
              FROM numbers({days * 96 * 20}))
    """)
    client.command(f"""
        INSERT INTO retrain_runs (run_id, ts, app_id, model, status, rule, model_version)
        SELECT generateUUIDv4(intDiv(number, 3)), toDateTime64({end} - intDiv(number, 3) * 7200 + (number % 3) * 60,
            3, 'UTC'), {apps}[1 + intDiv(number, 3) % 5], 'gpt-4o-mini',
            ['requested', 'launched', 'succeeded'][1 + number % 3], if(number % 3 = 0, 'thumbs_down_rate>0.2', ''),
            if(number % 3 = 2, concat('ft-', toString(intDiv(number, 3))), '')
        FROM numbers({days * 12 * 3})
    """)
    client.command(f"""
        INSERT INTO dead_letters (dlq_id, ts, source_topic, partition, offset, payload, error, service)
        SELECT generateUUIDv4(number), toDateTime64({end} - number * 600, 3, 'UTC'),
            ['llm.events', 'llm.scores'][1 + number % 2], 0, number, '{{', 'invalid json', 'sink'
        FROM numbers({days * 144})
    """)
    progress(f"other tables ({time.perf_counter() - t0:.1f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=7, help="the calls spread evenly over this many days")
    ap.add_argument("--path", help="chdb path (default: a fresh temporary directory)")
    args = ap.parse_args()

    path = args.path or tempfile.mkdtemp(prefix="lookout-bench-dash-")
    settings = CommonSettings(clickhouse_dsn=f"chdb://{path}", clickhouse_database="bench_dashboards")
    client = clickhouse.connect(settings)
    for table in ("calls_1m_mv", "calls_1m", "llm_calls"):
        client.command(f"DROP TABLE IF EXISTS {table}")
    migrations.apply(client, retention_days=max(90, args.days + 1))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    t0 = time.perf_counter()
    fill(client, args.rows, args.days, now)
    fill_s = time.perf_counter() - t0
    stored = client.query("SELECT count() FROM llm_calls").result_rows[0][0]
    in_range = client.query(
        "SELECT count() FROM llm_calls WHERE ts >= now64() - INTERVAL 1 DAY").result_rows[0][0]
    counts = {t: client.query(f"SELECT count() FROM {t}").result_rows[0][0]
              for t in ("calls_1m", "versions_1m", "scores", "feedback", "review_tasks", "drift_results")}
    progress(f"filled in {fill_s:.0f} s: {stored:,} calls ({in_range:,} in the last 24 h), {counts}")

    start = now - timedelta(hours=24)
    context = QueryContext(
        time_from=start, time_to=now, interval_s=macros.interval_for(start, now),
        variables={"app": ALL, "model": ALL, "environment": ALL, "daily_budget": 100.0},
    )
    results = []
    for p in PANELS:
        sql = macros.expand(p.sql, context)
        times, n_rows = [], 0
        for _ in range(3):
            t = time.perf_counter()
            n_rows = len(client.query(sql).result_rows)
            times.append((time.perf_counter() - t) * 1000)
        ms = statistics.median(times)
        results.append({"panel": p.id, "median_ms": round(ms, 1), "rows": n_rows, "ok": ms < TARGET_MS})

    print(f"\nDashboard panels on {stored:,} stored calls over {args.days} d ({in_range:,} in the last 24 h); "
          f"range: last 24 h, All apps/models/environments; median of 3; target < {TARGET_MS:.0f} ms")
    print(f"{'panel':<24} {'ms':>9} {'rows':>6}  target")
    for r in results:
        print(f"{r['panel']:<24} {r['median_ms']:>9.1f} {r['rows']:>6}  {'ok' if r['ok'] else 'OVER'}")
    OUT.mkdir(exist_ok=True)
    (OUT / "dashboards.json").write_text(json.dumps({
        "stored_calls": stored, "calls_last_24h": in_range, "days": args.days, "fill_s": round(fill_s, 1),
        "tables": counts, "target_ms": TARGET_MS, "panels": results,
    }, indent=2))


if __name__ == "__main__":
    main()
