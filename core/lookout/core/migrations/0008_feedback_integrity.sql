-- Feedback integrity (issue 13).

-- Reviewer feedback signatures: the feedback service signs each review it accepts
-- (HMAC-SHA256, lookout.core.review_signing) and datasets take only reviewer rows whose
-- signature verifies, so a row written straight onto llm.feedback by anyone else is
-- stored but never becomes training data. Rows stored before this migration have ''.
ALTER TABLE feedback ADD COLUMN IF NOT EXISTS signature String;

-- The latest vote of each author on each call, where a call is (app_id, event_id): two
-- apps may store the same event id, and their votes must never merge into one.
CREATE OR REPLACE VIEW feedback_latest AS
SELECT
    f.app_id AS app_id,
    f.event_id AS event_id,
    f.source AS source,
    f.author AS author,
    argMax(f.feedback_id, (f.ts, f.feedback_id)) AS feedback_id,
    max(f.ts) AS ts,
    argMax(f.thumbs, (f.ts, f.feedback_id)) AS thumbs,
    argMax(f.rating, (f.ts, f.feedback_id)) AS rating,
    argMax(f.labels, (f.ts, f.feedback_id)) AS labels,
    argMax(f.corrected_output, (f.ts, f.feedback_id)) AS corrected_output,
    argMax(f.comment, (f.ts, f.feedback_id)) AS comment
FROM feedback AS f
GROUP BY f.app_id, f.event_id, f.source, f.author;
