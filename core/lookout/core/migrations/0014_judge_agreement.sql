-- Judge agreement, live (issue 16): how far each judge rubric agrees with reviewer ratings.
--
-- Written by the judge only (services/judge live_agreement.py), every
-- LOOKOUT_JUDGE_AGREEMENT_INTERVAL_S: one row per app, rubric, rubric version (the scores'
-- evaluator_version: rubric version + prompt framing) and judge model, over the reviews of
-- the window [window_start, window_end). A rerun of a window (replicas, restarts) writes the
-- same key again; the latest computation wins.
--
-- kappa is Cohen's kappa of the pass/fail call (a judgment or a rating above the middle of
-- its scale passes), judge_pass_rate and reviewer_pass_rate its base rates (the chance
-- agreement it corrects for is jr*rr + (1-jr)*(1-rr)), observed_agreement the share both
-- called alike; kappa_quadratic is the weighted kappa on the 1..5 ratings and spearman the
-- rank correlation of judge values and ratings. NULL where undefined (too few pairs, or a
-- rater who never varies).
CREATE TABLE IF NOT EXISTS judge_agreement
(
    window_end DateTime64(3, 'UTC'),
    window_start DateTime64(3, 'UTC'),
    app_id LowCardinality(String),
    rubric LowCardinality(String),
    rubric_version LowCardinality(String),
    evaluator LowCardinality(String),
    pairs UInt32,
    kappa Nullable(Float64),
    observed_agreement Nullable(Float64),
    judge_pass_rate Nullable(Float64),
    reviewer_pass_rate Nullable(Float64),
    kappa_quadratic Nullable(Float64),
    spearman Nullable(Float64),
    spearman_p Nullable(Float64),
    computed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toDate(window_end)
ORDER BY (app_id, rubric, rubric_version, evaluator, window_end)
TTL toDateTime(window_end) + INTERVAL {retention_days} DAY;
