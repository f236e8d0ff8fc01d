-- Feedback service (issue 7): review queue, reviewer accounts, sessions, dataset versions.

-- One row per (call, reason) a call was queued for; a task is the group of a call's rows.
-- Signals replayed after a crash write the same key, so they collapse.
CREATE TABLE IF NOT EXISTS review_tasks
(
    event_id UUID,
    app_id LowCardinality(String),
    model LowCardinality(String),
    kind LowCardinality(String),
    reason String,
    severity Float64,
    created_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(created_at)
ORDER BY (app_id, event_id, kind, reason)
TTL toDateTime(created_at) + INTERVAL {retention_days} DAY;

-- Reviews completed, one row per (task, reviewer). The claim log (Kafka, one partition)
-- decides who may complete a task; this table is what the queue query excludes once a
-- task has `needed` reviewers (2 for the overlap share, else 1).
CREATE TABLE IF NOT EXISTS review_done
(
    event_id UUID,
    app_id LowCardinality(String),
    reviewer String,
    feedback_id UUID,
    needed UInt8,
    ts DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (app_id, event_id, reviewer)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY;

-- Reviewer accounts; each change writes a new row with a higher version.
CREATE TABLE IF NOT EXISTS reviewers
(
    username String,
    password_hash String,
    role LowCardinality(String),
    apps Array(String),
    disabled UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY username;

-- Login sessions; only sha256 of the cookie value is stored. Logout writes revoked = 1.
CREATE TABLE IF NOT EXISTS review_sessions
(
    session_hash String,
    username String,
    csrf String,
    expires_at DateTime64(3, 'UTC'),
    revoked UInt8,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY session_hash
TTL toDateTime(expires_at) + INTERVAL 1 DAY;

-- The latest vote of each author on each call: a repeated thumbs writes a new feedback
-- row (own feedback_id, later ts), and readers take the last one per (call, source, author).
CREATE VIEW IF NOT EXISTS feedback_latest AS
SELECT
    f.event_id AS event_id,
    f.source AS source,
    f.author AS author,
    argMax(f.feedback_id, (f.ts, f.feedback_id)) AS feedback_id,
    argMax(f.app_id, (f.ts, f.feedback_id)) AS app_id,
    max(f.ts) AS ts,
    argMax(f.thumbs, (f.ts, f.feedback_id)) AS thumbs,
    argMax(f.rating, (f.ts, f.feedback_id)) AS rating,
    argMax(f.labels, (f.ts, f.feedback_id)) AS labels,
    argMax(f.corrected_output, (f.ts, f.feedback_id)) AS corrected_output,
    argMax(f.comment, (f.ts, f.feedback_id)) AS comment
FROM feedback AS f
GROUP BY f.event_id, f.source, f.author;

-- Exported datasets: content hash, counts and the filters that made them.
CREATE TABLE IF NOT EXISTS dataset_versions
(
    dataset_id String,
    sha256 String,
    created_at DateTime64(3, 'UTC'),
    filters String,
    sft_count UInt64,
    preference_count UInt64,
    location String
)
ENGINE = ReplacingMergeTree
ORDER BY dataset_id;
