-- Traces, sessions and the call explorer (issue 17).

-- Every span OTLP intake keeps: agent runs, tool calls, retrievals, embeddings, chains, and
-- one row per LLM call span (kind 'llm', event_id = the call), linked by trace and parent
-- span ids. A trace is read by (app_id, trace_id): the sort key leads with both.
CREATE TABLE IF NOT EXISTS trace_spans
(
    span_key UUID,
    app_id LowCardinality(String),
    trace_id String,
    span_id String,
    parent_span_id String,
    -- Microseconds: steps of one trace often start within the same millisecond, and the tree
    -- orders siblings by start.
    ts DateTime64(6, 'UTC'),
    duration_ms Nullable(Float64),
    kind LowCardinality(String),
    name String,
    status LowCardinality(String),
    error String,
    environment LowCardinality(String),
    session_id String,
    user_id String,
    event_id Nullable(UUID),
    provider LowCardinality(String),
    model LowCardinality(String),
    tokens_in Nullable(UInt64),
    tokens_out Nullable(UInt64),
    cost_usd Nullable(Float64),
    input String CODEC(ZSTD(3)),
    output String CODEC(ZSTD(3)),
    attributes Map(String, String),
    source LowCardinality(String),
    source_version LowCardinality(String),
    ingested_at DateTime64(3, 'UTC'),
    INDEX idx_trace_id trace_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_session_id session_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (app_id, trace_id, span_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Cached and reasoning tokens, priced apart from the rest of a call's tokens.
ALTER TABLE llm_calls ADD COLUMN IF NOT EXISTS tokens_cache_read Nullable(UInt64) AFTER tokens_out;
ALTER TABLE llm_calls ADD COLUMN IF NOT EXISTS tokens_cache_write Nullable(UInt64) AFTER tokens_cache_read;
ALTER TABLE llm_calls ADD COLUMN IF NOT EXISTS tokens_reasoning Nullable(UInt64) AFTER tokens_cache_write;

-- A session (conversation) is read by its id; the explorer searches text.
ALTER TABLE llm_calls ADD INDEX IF NOT EXISTS idx_session_id session_id TYPE bloom_filter GRANULARITY 4;
ALTER TABLE llm_calls ADD INDEX IF NOT EXISTS idx_output_ngrams lower(output) TYPE ngrambf_v1(3, 65536, 2, 0) GRANULARITY 4;
ALTER TABLE llm_calls ADD INDEX IF NOT EXISTS idx_input_ngrams lower(input) TYPE ngrambf_v1(3, 65536, 2, 0) GRANULARITY 4;

-- Which model (and system fingerprint) answered each requested model name, per hour: the
-- model identity watch (drift service) compares identities of one requested name over time,
-- so a provider silently serving another model behind a name is seen. Ingest writes the
-- requested name to metadata['gen_ai.request.model'] when the answer names another, and
-- the fingerprint to metadata['openai.response.system_fingerprint'].
CREATE TABLE IF NOT EXISTS model_identity_1h
(
    hour DateTime('UTC'),
    app_id LowCardinality(String),
    requested_model LowCardinality(String),
    served_model LowCardinality(String),
    fingerprint String,
    calls AggregateFunction(count),
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    first_event AggregateFunction(argMin, UUID, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(hour)
ORDER BY (app_id, requested_model, hour, served_model, fingerprint)
TTL hour + INTERVAL {retention_days} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS model_identity_1h_mv TO model_identity_1h AS
SELECT
    toStartOfHour(ts) AS hour,
    app_id,
    if(metadata['gen_ai.request.model'] != '', metadata['gen_ai.request.model'], model) AS requested_model,
    model AS served_model,
    metadata['openai.response.system_fingerprint'] AS fingerprint,
    countState() AS calls,
    min(ts) AS first_seen,
    max(ts) AS last_seen,
    argMinState(event_id, ts) AS first_event
FROM llm_calls
GROUP BY hour, app_id, requested_model, served_model, fingerprint;
