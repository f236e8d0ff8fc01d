-- Drift service (issue 5): the samples it embedded, its window state, reference resets,
-- and which events each tested window compared. Until this migration the drift service
-- created the first three itself (same definitions, IF NOT EXISTS: an existing database
-- keeps its tables).

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

-- The events each tested window compared, one row per window: what lets a stored result
-- be reported on later (GET /v1/drift/{result_id}/report) with exactly the samples its
-- test saw. Time spans cannot say that: event times of one stream interleave across
-- clients, and a pinned reference is a hash-sample of its range. reference_source says
-- where the reference's samples are in drift_embeddings: 'stream', or 'upload:<id>'
-- (source = 'upload', reference_id = <id>). A replayed window writes the same key.
CREATE TABLE IF NOT EXISTS drift_windows
(
    app_id LowCardinality(String),
    model LowCardinality(String),
    prompt_version String,
    reference_id String,
    window_index UInt32,
    reference_source String,
    reference_events Array(UUID) CODEC(ZSTD(3)),
    current_events Array(UUID) CODEC(ZSTD(3)),
    stored_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (app_id, model, prompt_version, reference_id, window_index)
TTL toDateTime(stored_at) + INTERVAL {retention_days} DAY;

-- The report endpoint looks results up by id alone, which the sort key does not lead with.
ALTER TABLE drift_results ADD INDEX IF NOT EXISTS idx_result_id result_id TYPE bloom_filter GRANULARITY 4;
