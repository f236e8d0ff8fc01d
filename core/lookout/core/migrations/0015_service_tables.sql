-- Service tables and derived state (issue 14): the tables the feedback service and the
-- retrain trigger used to create themselves at start, and the two states several readers
-- derive (a retrain run's latest status, an open review task), defined once here.
--
-- The tables keep the exact definitions the services created (IF NOT EXISTS), so a store
-- that already has them keeps them and their rows as they are.

-- Review settings an admin changes at run time (the feedback service's runtime.py): one
-- row per change, the latest per name wins.
CREATE TABLE IF NOT EXISTS feedback_runtime_settings
(
    name String,
    value String,
    updated_by String,
    ts DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY name;

-- The retrain trigger's window evidence, written before its consumer commits, keyed by
-- the id of the record each observation came from (a replay collapses onto it).
-- `voter`: the author of a thumbs vote, so the rules count one vote per (author, call).
CREATE TABLE IF NOT EXISTS retrain_observations
(
    obs_id String,
    ts DateTime64(3, 'UTC'),
    app_id LowCardinality(String),
    model LowCardinality(String),
    kind LowCardinality(String),
    name LowCardinality(String),
    value Float64,
    event_id String,
    voter String
)
ENGINE = ReplacingMergeTree
ORDER BY (app_id, model, obs_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY;

-- Tables the retrain trigger made before votes kept their voter get the column ('' for
-- their old rows, which the rules count without replacing).
ALTER TABLE retrain_observations ADD COLUMN IF NOT EXISTS voter String;

-- Candidate model versions that succeeded retrain runs registered.
CREATE TABLE IF NOT EXISTS model_versions
(
    app_id LowCardinality(String),
    model LowCardinality(String),
    model_version String,
    run_id UUID,
    registered_at DateTime64(3, 'UTC'),
    status LowCardinality(String),
    dataset_hash String,
    rule String,
    artifact String
)
ENGINE = ReplacingMergeTree(registered_at)
ORDER BY (app_id, model, model_version);

-- One row per retrain run: its latest status and what its transitions carried. The
-- latest status is the row with the latest ts, ties (two transitions in one millisecond)
-- broken by the order a run passes its states: requested, approved, launched, running,
-- then a final one (succeeded, failed, timed_out, rejected). The retrain trigger restores
-- its runs from here, the review UI lists the runs awaiting approval, the dashboards show
-- them. Replayed rows (not merged yet) change none of the columns.
--  * rule: the latest non-empty one (a job's own reports may leave it out);
--  * trained_version: the model version a succeeded run reported;
--  * requests / requested_at: how many `requested` rows, and the first one's ts;
--  * requested_evidence, requested_message: the latest `requested` row's (else the latest row's);
--  * dataset_*: the latest row's that has a dataset (its `requested` row, copied onwards).
CREATE OR REPLACE VIEW retrain_run_state AS
SELECT
    app_id,
    model,
    run_id,
    argMax(status, (ts, multiIf(status IN ('succeeded', 'failed', 'timed_out', 'rejected'), 4,
                                status = 'running', 3, status = 'launched', 2, status = 'approved', 1, 0)))
        AS latest_status,
    min(ts) AS started,
    max(ts) AS updated,
    argMax(rule, (rule != '', ts)) AS rule,
    argMaxIf(model_version, ts, model_version != '') AS trained_version,
    countIf(status = 'requested') AS requests,
    minIf(ts, status = 'requested') AS requested_at,
    argMax(evidence, (status = 'requested', ts)) AS requested_evidence,
    argMax(message, (status = 'requested', ts)) AS requested_message,
    argMax(dataset_uri, (dataset_uri != '', ts)) AS dataset_uri,
    argMax(dataset_hash, (dataset_hash != '', ts)) AS dataset_hash,
    argMax(dataset_counts, (length(dataset_counts) > 0, ts)) AS dataset_counts
FROM retrain_runs
GROUP BY app_id, model, run_id;

-- Every reason row of the review tasks (review_tasks: one per call and reason) with the
-- time its task was finished: when its `needed`-th distinct reviewer completed it in
-- review_done (`needed`: 2 for the overlap share, else 1, fixed by the task's first
-- claim; a replayed row collapses onto its reviewer). done_at is NULL while the task is
-- open. A task is a call, (app_id, event_id): another app's task with the same event id
-- is another task. Open at time T: created_at <= T AND (done_at IS NULL OR done_at > T);
-- open now: done_at IS NULL. The feedback service's queue and the dashboards' queue
-- panels read this view.
CREATE OR REPLACE VIEW review_task_state AS
SELECT
    t.event_id AS event_id,
    t.app_id AS app_id,
    t.model AS model,
    t.kind AS kind,
    t.reason AS reason,
    t.severity AS severity,
    t.created_at AS created_at,
    d.done_at AS done_at
FROM review_tasks AS t
LEFT JOIN
(
    SELECT app_id, event_id,
           if(count() >= greatest(max(needed), 1), arraySort(groupArray(first_ts))[greatest(max(needed), 1)], NULL)
               AS done_at
    FROM
    (
        SELECT app_id, event_id, reviewer, min(ts) AS first_ts, max(needed) AS needed
        FROM review_done
        GROUP BY app_id, event_id, reviewer
    )
    GROUP BY app_id, event_id
) AS d ON d.app_id = t.app_id AND d.event_id = t.event_id;
