-- Reads by id for the call explorer and the read API (issue 17): a call, its scores and
-- votes, a trace, a session. The big tables are sorted for time-range scans per app
-- (llm_calls by (app_id, model, ts, event_id), one partition a day), so a read by id
-- alone had to probe the bloom-filter index of every day's parts. `id_lookup` is an
-- inverted index kept by materialized views: for each id, the full sort key of every row
-- that carries it, so a read by id is one granule here and then a primary-key read of
-- exactly those rows there (a few granules, whatever the store's size or the row's age).
--
--  kind      id           app_id  sort       ts                row_id       rows addressed
--  call      event_id     app     model      ts                event_id     llm_calls
--  session   session_id   app     model      ts                event_id     llm_calls
--  trace     trace_id     app     model      ts                event_id     llm_calls
--  score     event_id     app     name       ts                score_id     scores
--  vote      event_id     app     ''         ts                feedback_id  feedback
--  span      trace_id     app     ''         day of the span   zero         trace_spans (app_id, trace_id) in that day
--  span_session session_id app    trace_id   day of the span   zero         the traces of a session, by day
--
-- Spans are kept per (trace, app, day), not per span: the trace table's own sort key
-- (app_id, trace_id, span_id) finds the spans inside a day's partition.
-- A replayed row lands on the same key and collapses (readers take DISTINCT keys).
CREATE TABLE IF NOT EXISTS id_lookup
(
    kind Enum8('call' = 1, 'session' = 2, 'trace' = 3, 'score' = 4, 'vote' = 5, 'span' = 6, 'span_session' = 7),
    id String,
    app_id LowCardinality(String),
    sort String,
    ts DateTime64(3, 'UTC'),
    row_id UUID
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (kind, id, app_id, sort, ts, row_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
-- Point reads: a small granule is a small read.
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS id_lookup_calls_mv TO id_lookup AS
SELECT key.1 AS kind, key.2 AS id, app_id, model AS sort, ts, event_id AS row_id
FROM llm_calls
ARRAY JOIN arrayFilter(k -> k.2 != '', [
    ('call', toString(event_id)),
    ('session', session_id),
    ('trace', trace_id)]) AS key;

CREATE MATERIALIZED VIEW IF NOT EXISTS id_lookup_scores_mv TO id_lookup AS
SELECT 'score' AS kind, toString(event_id) AS id, app_id, toString(name) AS sort, ts, score_id AS row_id
FROM scores;

CREATE MATERIALIZED VIEW IF NOT EXISTS id_lookup_feedback_mv TO id_lookup AS
SELECT 'vote' AS kind, toString(event_id) AS id, app_id, '' AS sort, ts, feedback_id AS row_id
FROM feedback;

CREATE MATERIALIZED VIEW IF NOT EXISTS id_lookup_spans_mv TO id_lookup AS
SELECT DISTINCT key.1 AS kind, key.2 AS id, app_id, key.3 AS sort, toDateTime64(toStartOfDay(ts), 3, 'UTC') AS ts,
    toUUID('00000000-0000-0000-0000-000000000000') AS row_id
FROM trace_spans
ARRAY JOIN arrayFilter(k -> k.2 != '', [
    ('span', trace_id, ''),
    ('span_session', session_id, trace_id)]) AS key;

-- Backfill the rows stored before this migration. The views above already see new rows,
-- so a row written meanwhile is in both and collapses; a re-run (a crash before the
-- migration was recorded) adds only duplicates, which collapse too.
INSERT INTO id_lookup (kind, id, app_id, sort, ts, row_id)
SELECT key.1, key.2, app_id, model, ts, event_id
FROM llm_calls
ARRAY JOIN arrayFilter(k -> k.2 != '', [
    ('call', toString(event_id)),
    ('session', session_id),
    ('trace', trace_id)]) AS key;

INSERT INTO id_lookup (kind, id, app_id, sort, ts, row_id)
SELECT 'score', toString(event_id), app_id, toString(name), ts, score_id FROM scores;

INSERT INTO id_lookup (kind, id, app_id, sort, ts, row_id)
SELECT 'vote', toString(event_id), app_id, '', ts, feedback_id FROM feedback;

INSERT INTO id_lookup (kind, id, app_id, sort, ts, row_id)
SELECT DISTINCT key.1, key.2, app_id, key.3, toDateTime64(toStartOfDay(ts), 3, 'UTC'),
    toUUID('00000000-0000-0000-0000-000000000000')
FROM trace_spans
ARRAY JOIN arrayFilter(k -> k.2 != '', [
    ('span', trace_id, ''),
    ('span_session', session_id, trace_id)]) AS key;
