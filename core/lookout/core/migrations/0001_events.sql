-- LLM calls, keyed by the client-made event_id so replays collapse.
CREATE TABLE IF NOT EXISTS llm_calls
(
    event_id UUID,
    ts DateTime64(3, 'UTC'),
    app_id LowCardinality(String),
    environment LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    model_version String,
    prompt_version String,
    input String CODEC(ZSTD(3)),
    prompt String CODEC(ZSTD(3)),
    output String CODEC(ZSTD(3)),
    tokens_in Nullable(UInt64),
    tokens_out Nullable(UInt64),
    latency_ms Nullable(Float64),
    ttft_ms Nullable(Float64),
    status LowCardinality(String),
    error String,
    cost_usd Nullable(Float64),
    cost_source LowCardinality(String),
    user_id String,
    session_id String,
    trace_id String,
    span_id String,
    tags Array(String),
    metadata Map(String, String),
    context Array(String) CODEC(ZSTD(3)),
    reference String CODEC(ZSTD(3)),
    logprobs Array(Float32),
    pii_redactions UInt32,
    ingested_at DateTime64(3, 'UTC'),
    INDEX idx_event_id event_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_trace_id trace_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (app_id, model, ts, event_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS scores
(
    score_id UUID,
    event_id UUID,
    ts DateTime64(3, 'UTC'),
    app_id LowCardinality(String),
    model LowCardinality(String),
    name LowCardinality(String),
    value Float64,
    label String,
    source LowCardinality(String),
    evaluator LowCardinality(String),
    evaluator_version LowCardinality(String),
    explanation String,
    cost_usd Float64,
    INDEX idx_event_id event_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (app_id, name, ts, score_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS drift_results
(
    result_id UUID,
    ts DateTime64(3, 'UTC'),
    app_id LowCardinality(String),
    model LowCardinality(String),
    prompt_version String,
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    signal LowCardinality(String),
    method LowCardinality(String),
    statistic Float64,
    p_value Nullable(Float64),
    threshold Nullable(Float64),
    drifted UInt8,
    reference_size UInt32,
    current_size UInt32,
    reference_id String,
    examples Array(UUID),
    details String
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (app_id, model, signal, ts, result_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS feedback
(
    feedback_id UUID,
    event_id UUID,
    ts DateTime64(3, 'UTC'),
    app_id LowCardinality(String),
    source LowCardinality(String),
    author String,
    thumbs Nullable(Int8),
    rating Nullable(UInt8),
    labels Array(String),
    corrected_output String CODEC(ZSTD(3)),
    comment String,
    INDEX idx_event_id event_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (app_id, ts, feedback_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per status transition; the latest row of a run is its state.
CREATE TABLE IF NOT EXISTS retrain_runs
(
    run_id UUID,
    ts DateTime64(3, 'UTC'),
    app_id LowCardinality(String),
    model LowCardinality(String),
    status LowCardinality(String),
    rule String,
    evidence String,
    dataset_uri String,
    dataset_counts Map(String, UInt64),
    dataset_hash String,
    model_version String,
    message String
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (app_id, model, run_id, status, ts)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS dead_letters
(
    dlq_id UUID,
    ts DateTime64(3, 'UTC'),
    source_topic LowCardinality(String),
    partition Int32,
    offset Int64,
    key String,
    payload String CODEC(ZSTD(3)),
    error String,
    service LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (source_topic, partition, offset, dlq_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY;
