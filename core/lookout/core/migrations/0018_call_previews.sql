-- The call explorer's list (issue 17), newest first across apps. llm_calls is sorted by
-- (app_id, model, ts, event_id), so "the newest 50 calls of every app" reads a granule of
-- every (app, model) segment of the day, and their prompts and answers (a few hundred
-- bytes to megabytes a row) with it. `call_previews` holds just what a list row shows,
-- in time order: the newest page is the last granule or two, a page deep in the cursor
-- is as cheap as the first, and a page's previews are a few hundred bytes a row.
-- Kept by a materialized view on llm_calls, so whatever inserts calls (the sink, tests,
-- the bench) fills it with no change of its own.
--
-- Previews (question, answer, error) are cut at 300 characters, what the list shows
-- (PREVIEW_CHARS in lookout.core.explore, which reads the call's full text from
-- llm_calls). A replayed call lands on the same key and collapses; readers take one row
-- per (app_id, event_id).
CREATE TABLE IF NOT EXISTS call_previews
(
    ts DateTime64(3, 'UTC'),
    app_id LowCardinality(String),
    event_id UUID,
    environment LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    model_version String,
    prompt_version String,
    status LowCardinality(String),
    error String,
    latency_ms Nullable(Float64),
    tokens_in Nullable(UInt64),
    tokens_out Nullable(UInt64),
    cost_usd Nullable(Float64),
    session_id String,
    trace_id String,
    question String CODEC(ZSTD(3)),
    answer String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, app_id, event_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
-- A page is 50-200 rows: small granules keep a page's read near its own size.
SETTINGS index_granularity = 1024;

-- The question is the prompt's last user message (else its last message, else the prompt).
CREATE MATERIALIZED VIEW IF NOT EXISTS call_previews_mv TO call_previews AS
SELECT ts, app_id, event_id, environment, provider, model, model_version, prompt_version, status,
    substring(error, 1, 300) AS error, latency_ms, tokens_in, tokens_out, cost_usd, session_id, trace_id,
    substring(if(input = '', prompt, JSONExtractString(if(arrayExists(m -> JSONExtractString(m, 'role') = 'user',
        JSONExtractArrayRaw(input)), arrayLast(m -> JSONExtractString(m, 'role') = 'user', JSONExtractArrayRaw(input)),
        arrayElement(JSONExtractArrayRaw(input), -1)), 'content')), 1, 300) AS question,
    substring(output, 1, 300) AS answer
FROM llm_calls;

-- Backfill the calls stored before this migration, newest first, in slices by age (a day,
-- a week, a month, a quarter, half a year, the rest): each slice is one statement, a read
-- bounded by its partitions, and is recorded in call_previews_backfill when done, so a
-- re-run after a crash (before the migration was recorded) resumes at the first slice not
-- done. The view above already sees new rows, so a row written meanwhile is in both and
-- collapses, as do the rows of a slice cut by a crash and redone. A slice's bounds are
-- relative to its statement's now(): on a later re-run they move forward, so a slice
-- overlaps the one done before it (rows collapse) and never leaves a gap.
CREATE TABLE IF NOT EXISTS call_previews_backfill (slice UInt8, done_at DateTime64(3, 'UTC') DEFAULT now64(3))
ENGINE = ReplacingMergeTree ORDER BY slice;

-- The view's rows as a plain view, so each slice below is one short statement (ClickHouse
-- pushes a slice's ts bounds into the view, so it reads only that slice's partitions);
-- dropped at the end. A materialized view fires only on inserts into the table it reads,
-- so call_previews_mv above keeps its own copy of this SELECT.
CREATE VIEW IF NOT EXISTS call_previews_source AS
SELECT ts, app_id, event_id, environment, provider, model, model_version, prompt_version, status,
    substring(error, 1, 300) AS error, latency_ms, tokens_in, tokens_out, cost_usd, session_id, trace_id,
    substring(if(input = '', prompt, JSONExtractString(if(arrayExists(m -> JSONExtractString(m, 'role') = 'user',
        JSONExtractArrayRaw(input)), arrayLast(m -> JSONExtractString(m, 'role') = 'user', JSONExtractArrayRaw(input)),
        arrayElement(JSONExtractArrayRaw(input), -1)), 'content')), 1, 300) AS question,
    substring(output, 1, 300) AS answer
FROM llm_calls;

INSERT INTO call_previews
SELECT * FROM call_previews_source WHERE ts >= now64(3) - INTERVAL 1 DAY
    AND (SELECT count() FROM call_previews_backfill WHERE slice = 1) = 0;

INSERT INTO call_previews_backfill (slice) SELECT 1 WHERE (SELECT count() FROM call_previews_backfill WHERE slice = 1) = 0;

INSERT INTO call_previews
SELECT * FROM call_previews_source WHERE ts >= now64(3) - INTERVAL 7 DAY AND ts < now64(3) - INTERVAL 1 DAY
    AND (SELECT count() FROM call_previews_backfill WHERE slice = 2) = 0;

INSERT INTO call_previews_backfill (slice) SELECT 2 WHERE (SELECT count() FROM call_previews_backfill WHERE slice = 2) = 0;

INSERT INTO call_previews
SELECT * FROM call_previews_source WHERE ts >= now64(3) - INTERVAL 31 DAY AND ts < now64(3) - INTERVAL 7 DAY
    AND (SELECT count() FROM call_previews_backfill WHERE slice = 3) = 0;

INSERT INTO call_previews_backfill (slice) SELECT 3 WHERE (SELECT count() FROM call_previews_backfill WHERE slice = 3) = 0;

INSERT INTO call_previews
SELECT * FROM call_previews_source WHERE ts >= now64(3) - INTERVAL 92 DAY AND ts < now64(3) - INTERVAL 31 DAY
    AND (SELECT count() FROM call_previews_backfill WHERE slice = 4) = 0;

INSERT INTO call_previews_backfill (slice) SELECT 4 WHERE (SELECT count() FROM call_previews_backfill WHERE slice = 4) = 0;

INSERT INTO call_previews
SELECT * FROM call_previews_source WHERE ts >= now64(3) - INTERVAL 183 DAY AND ts < now64(3) - INTERVAL 92 DAY
    AND (SELECT count() FROM call_previews_backfill WHERE slice = 5) = 0;

INSERT INTO call_previews_backfill (slice) SELECT 5 WHERE (SELECT count() FROM call_previews_backfill WHERE slice = 5) = 0;

INSERT INTO call_previews
SELECT * FROM call_previews_source WHERE ts < now64(3) - INTERVAL 183 DAY
    AND (SELECT count() FROM call_previews_backfill WHERE slice = 6) = 0;

INSERT INTO call_previews_backfill (slice) SELECT 6 WHERE (SELECT count() FROM call_previews_backfill WHERE slice = 6) = 0;

DROP VIEW IF EXISTS call_previews_source;
