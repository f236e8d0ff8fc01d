-- Model versions (issue 9): scores and votes carry the model_version of the call they are
-- about, and a per-minute rollup keyed by version feeds the "old vs new" panel, so it
-- needs no join of scores and votes to llm_calls.

-- Copied from the call by the producer (judge, thumbs) or, when it did not know the call,
-- looked up by the sink. Rows stored before this migration keep '' here (the rollup
-- below is backfilled through their calls instead).
ALTER TABLE scores ADD COLUMN IF NOT EXISTS model_version LowCardinality(String);
ALTER TABLE scores ADD COLUMN IF NOT EXISTS environment LowCardinality(String);
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS model LowCardinality(String);
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS model_version LowCardinality(String);
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS environment LowCardinality(String);
-- The rated call's ts: a vote counts at its call's minute, next to the call.
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS call_ts Nullable(DateTime64(3, 'UTC'));
-- The thumbs of the author's earlier vote this one replaces (thumbs service), taken back
-- in the rollup so it counts each author's latest vote like feedback_latest.
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS replaces_thumbs Nullable(Int8);

-- Per minute of the calls, per served version: the calls, and the quality signals about
-- those calls (scores carry their call's ts; votes count at call_ts). Fed by three views,
-- one per source table; each fills its own columns and leaves the others empty.
--  * votes / thumbs_down: +1 per thumbs vote, and a replacing vote takes its predecessor
--    back (votes +0, thumbs_down +/-1), so the sums are each author's latest vote.
--  * judge_sum / judged: llm_judge score rows; the sink stores each score_id once.
--  * scored_calls / toxic_calls: distinct calls with a toxicity.* score, and with one at
--    or over 0.5 (dashboards.panels.TOXIC_AT), so a call's several labels count once.
CREATE TABLE IF NOT EXISTS versions_1m
(
    minute DateTime('UTC'),
    app_id LowCardinality(String),
    model LowCardinality(String),
    model_version LowCardinality(String),
    environment LowCardinality(String),
    calls AggregateFunction(count),
    votes AggregateFunction(sum, Int64),
    thumbs_down AggregateFunction(sum, Int64),
    judge_sum AggregateFunction(sumIf, Float64, UInt8),
    judged AggregateFunction(countIf, UInt8),
    scored_calls AggregateFunction(uniqExactIf, UUID, UInt8),
    toxic_calls AggregateFunction(uniqExactIf, UUID, UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (app_id, model, model_version, environment, minute)
TTL minute + INTERVAL {retention_days} DAY;

-- Backfill what was stored before this migration, each source once (a re-run after a
-- crash skips the sources already in the rollup). Old scores and votes reach their
-- version through their call; one whose call is gone counts under version ''.
-- Rows stored between these statements and the views below are not counted.
INSERT INTO versions_1m (minute, app_id, model, model_version, environment, calls)
SELECT toStartOfMinute(ts) AS minute, app_id, model, model_version, environment, countState() AS calls
FROM llm_calls
WHERE (SELECT countMerge(calls) FROM versions_1m) = 0
GROUP BY minute, app_id, model, model_version, environment;

INSERT INTO versions_1m (minute, app_id, model, model_version, environment, judge_sum, judged, scored_calls, toxic_calls)
SELECT
    toStartOfMinute(s.ts) AS minute,
    s.app_id AS app_id,
    s.model AS model,
    c.model_version AS model_version,
    c.environment AS environment,
    sumIfState(s.value, s.source = 'llm_judge') AS judge_sum,
    countIfState(s.source = 'llm_judge') AS judged,
    uniqExactIfState(s.event_id, s.name LIKE 'toxicity%') AS scored_calls,
    uniqExactIfState(s.event_id, s.name LIKE 'toxicity%' AND s.value >= 0.5) AS toxic_calls
FROM scores AS s FINAL
LEFT JOIN (SELECT event_id, any(model_version) AS model_version, any(environment) AS environment
           FROM llm_calls GROUP BY event_id) AS c ON c.event_id = s.event_id
WHERE (s.source = 'llm_judge' OR s.name LIKE 'toxicity%')
    AND (SELECT countIfMerge(judged) + uniqExactIfMerge(scored_calls) FROM versions_1m) = 0
GROUP BY minute, app_id, model, model_version, environment;

INSERT INTO versions_1m (minute, app_id, model, model_version, environment, votes, thumbs_down)
SELECT
    toStartOfMinute(if(c.found, c.ts, f.ts)) AS minute,
    f.app_id AS app_id,
    c.model AS model,
    c.model_version AS model_version,
    c.environment AS environment,
    sumState(toInt64(1)) AS votes,
    sumState(toInt64(f.thumbs = -1)) AS thumbs_down
FROM (SELECT event_id, app_id, ts, assumeNotNull(thumbs) AS thumbs FROM feedback_latest WHERE thumbs IS NOT NULL) AS f
LEFT JOIN (SELECT event_id, 1 AS found, any(ts) AS ts, any(model) AS model, any(model_version) AS model_version,
                  any(environment) AS environment FROM llm_calls GROUP BY event_id) AS c ON c.event_id = f.event_id
WHERE (SELECT sumMerge(votes) FROM versions_1m) = 0
GROUP BY minute, app_id, model, model_version, environment;

CREATE MATERIALIZED VIEW IF NOT EXISTS versions_1m_calls_mv TO versions_1m AS
SELECT toStartOfMinute(ts) AS minute, app_id, model, model_version, environment, countState() AS calls
FROM llm_calls
GROUP BY minute, app_id, model, model_version, environment;

CREATE MATERIALIZED VIEW IF NOT EXISTS versions_1m_scores_mv TO versions_1m AS
SELECT
    toStartOfMinute(ts) AS minute,
    app_id,
    model,
    model_version,
    environment,
    sumIfState(value, source = 'llm_judge') AS judge_sum,
    countIfState(source = 'llm_judge') AS judged,
    uniqExactIfState(event_id, name LIKE 'toxicity%') AS scored_calls,
    uniqExactIfState(event_id, name LIKE 'toxicity%' AND value >= 0.5) AS toxic_calls
FROM scores
WHERE source = 'llm_judge' OR name LIKE 'toxicity%'
GROUP BY minute, app_id, model, model_version, environment;

CREATE MATERIALIZED VIEW IF NOT EXISTS versions_1m_votes_mv TO versions_1m AS
SELECT
    toStartOfMinute(ifNull(call_ts, ts)) AS minute,
    app_id,
    model,
    model_version,
    environment,
    sumState(toInt64(replaces_thumbs IS NULL)) AS votes,
    sumState(toInt64(ifNull(thumbs, 0) = -1) - toInt64(ifNull(replaces_thumbs, 0) = -1)) AS thumbs_down
FROM feedback
WHERE thumbs IS NOT NULL
GROUP BY minute, app_id, model, model_version, environment;
