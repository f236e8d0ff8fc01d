-- Alert evaluation (issue 20): lookout.alerts evaluates the rules of dashboards/alerts.py
-- (the ones Grafana gets) and keeps here what it must not forget across a restart: each
-- alert instance's state, every transition, the notifications still to deliver, silences.
-- Rows are rewritten with a higher version; reads use FINAL.

-- One row per alert instance (rule + label set). Normal instances are written once when
-- they leave Pending/Alerting/Error, so the table holds the latest state of each.
CREATE TABLE IF NOT EXISTS alert_instances
(
    rule_uid LowCardinality(String),
    fingerprint String,
    app_id LowCardinality(String),
    labels Map(String, String),
    state LowCardinality(String),
    value Nullable(Float64),
    error String,
    summary String,
    active_at Nullable(DateTime64(3, 'UTC')),
    fired_at Nullable(DateTime64(3, 'UTC')),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    last_eval DateTime64(3, 'UTC'),
    missing UInt8,
    episode UUID,
    notified Array(String),
    acked_by String,
    acked_at Nullable(DateTime64(3, 'UTC')),
    ack_comment String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (rule_uid, fingerprint)
TTL toDateTime(last_eval) + INTERVAL {retention_days} DAY;

-- What happened to alerts: state transitions, acknowledgements, notifications held back by
-- a silence. history_id makes a rewritten row collapse.
CREATE TABLE IF NOT EXISTS alert_history
(
    history_id UUID,
    ts DateTime64(3, 'UTC'),
    rule_uid LowCardinality(String),
    fingerprint String,
    app_id LowCardinality(String),
    labels Map(String, String),
    event LowCardinality(String),
    from_state LowCardinality(String),
    to_state LowCardinality(String),
    value Nullable(Float64),
    reason String,
    actor String,
    episode UUID
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (app_id, rule_uid, fingerprint, ts, history_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY;

-- The outbox: a notification is stored before its first attempt and rewritten after each,
-- so a restart resumes the ones still pending. payload is the alert as it was when the
-- notification was made (receivers format it at send time).
CREATE TABLE IF NOT EXISTS alert_notifications
(
    notification_id UUID,
    receiver LowCardinality(String),
    kind LowCardinality(String),
    rule_uid LowCardinality(String),
    fingerprint String,
    app_id LowCardinality(String),
    payload String,
    created_at DateTime64(3, 'UTC'),
    status LowCardinality(String),
    attempts UInt32,
    next_attempt_at DateTime64(3, 'UTC'),
    last_error String,
    sent_at Nullable(DateTime64(3, 'UTC')),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY notification_id
TTL toDateTime(created_at) + INTERVAL {retention_days} DAY;

-- Silences: notifications of matching instances are held back until ends_at. Expiring
-- one early rewrites it with ends_at = now.
CREATE TABLE IF NOT EXISTS alert_silences
(
    silence_id UUID,
    rule_uid LowCardinality(String),
    matchers Map(String, String),
    starts_at DateTime64(3, 'UTC'),
    ends_at DateTime64(3, 'UTC'),
    created_by String,
    comment String,
    created_at DateTime64(3, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY silence_id
TTL toDateTime(ends_at) + INTERVAL {retention_days} DAY;
