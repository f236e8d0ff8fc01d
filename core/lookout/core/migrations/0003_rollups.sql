-- Per-minute rollups for dashboards. The sink inserts each event once (it skips ids
-- already stored), so these sums do not double on replays.
CREATE TABLE IF NOT EXISTS calls_1m
(
    minute DateTime('UTC'),
    app_id LowCardinality(String),
    model LowCardinality(String),
    environment LowCardinality(String),
    calls AggregateFunction(count),
    errors AggregateFunction(sum, UInt64),
    tokens_in AggregateFunction(sum, UInt64),
    tokens_out AggregateFunction(sum, UInt64),
    cost_usd AggregateFunction(sum, Float64),
    latency_ms AggregateFunction(quantilesTDigestIf(0.5, 0.9, 0.99), Float64, UInt8),
    ttft_ms AggregateFunction(quantilesTDigestIf(0.5, 0.9, 0.99), Float64, UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (app_id, model, environment, minute)
TTL minute + INTERVAL {retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS calls_1m_mv TO calls_1m AS
SELECT
    toStartOfMinute(ts) AS minute,
    app_id,
    model,
    environment,
    countState() AS calls,
    sumState(toUInt64(status = 'error')) AS errors,
    sumState(ifNull(tokens_in, 0)) AS tokens_in,
    sumState(ifNull(tokens_out, 0)) AS tokens_out,
    sumState(ifNull(cost_usd, 0.)) AS cost_usd,
    quantilesTDigestIfState(0.5, 0.9, 0.99)(ifNull(latency_ms, 0.), toUInt8(isNotNull(latency_ms))) AS latency_ms,
    quantilesTDigestIfState(0.5, 0.9, 0.99)(ifNull(ttft_ms, 0.), toUInt8(isNotNull(ttft_ms))) AS ttft_ms
FROM llm_calls
GROUP BY minute, app_id, model, environment;
