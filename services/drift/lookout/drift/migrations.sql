-- Tables of the drift service, applied by it at start (IF NOT EXISTS: idempotent).
-- Candidate for core/lookout/core/migrations/0004_embeddings.sql.

-- One row per sampled event: its embeddings and token features. Drill-down for the UI
-- ("show me the calls near this point"), and the window state a restarted worker reloads.
-- source: 'stream' for events of llm.events, 'upload' for a pinned reference set sent to
-- the API (then reference_id names that set).
CREATE TABLE IF NOT EXISTS drift_embeddings
(
    event_id UUID,
    ts DateTime64(3, 'UTC'),
    app_id LowCardinality(String),
    model LowCardinality(String),
    prompt_version String,
    source LowCardinality(String),
    reference_id String,
    encoder LowCardinality(String),
    prompt_embedding Array(Float32),
    response_embedding Array(Float32),
    prompt_chars UInt32,
    response_chars UInt32,
    prompt_tokens UInt32,
    response_tokens UInt32,
    prompt_token_ids Array(UInt32) CODEC(ZSTD(3)),
    response_token_ids Array(UInt32) CODEC(ZSTD(3)),
    empty_or_refused UInt8,
    stored_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_event_id event_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (app_id, model, prompt_version, source, event_id)
-- By storage time, not event time: a backfill of old events must not expire the very
-- rows a window state points at.
TTL toDateTime(stored_at) + INTERVAL {retention_days} DAY;

-- Window state per stream, rewritten after each batch that touched the stream; the
-- highest version is the state. It names events (ids into drift_embeddings), not vectors.
CREATE TABLE IF NOT EXISTS drift_stream_state
(
    stream String,
    app_id LowCardinality(String),
    model LowCardinality(String),
    prompt_version String,
    version UInt64,
    state String CODEC(ZSTD(3)),
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY stream;

-- Reference resets asked for through the API of any replica; the worker that owns the
-- stream's partition applies each one once (it records the version it applied).
CREATE TABLE IF NOT EXISTS drift_reference_resets
(
    version UInt64,
    stream String,
    app_id LowCardinality(String),
    model LowCardinality(String),
    prompt_version String,
    policy LowCardinality(String),
    ts_from Nullable(DateTime64(3, 'UTC')),
    ts_to Nullable(DateTime64(3, 'UTC')),
    upload_reference String,
    requested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (stream, version);
