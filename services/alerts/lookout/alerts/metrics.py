"""Prometheus series of the evaluator (served at /metrics with every other service's)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVALUATIONS = Counter("lookout_alert_evaluations_total", "Rule evaluations by outcome (ok, error).",
                      ["rule", "outcome"])
EVALUATION_SECONDS = Histogram("lookout_alert_evaluation_seconds", "Time one rule's query and step took.", ["rule"],
                               buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
INSTANCES = Gauge("lookout_alert_instances", "Alert instances by rule and state (Pending, Alerting, Error).",
                  ["rule", "state"])
TRANSITIONS = Counter("lookout_alert_transitions_total", "Alert state transitions by rule and new state.",
                      ["rule", "state"])
NOTIFICATIONS = Counter(
    "lookout_alert_notifications_total",
    "Notifications by receiver, kind and outcome: sent; failed (rejected for good or past the give-up time); "
    "silenced (held back, never made).", ["receiver", "kind", "outcome"])
ATTEMPTS = Counter("lookout_alert_notification_attempts_total",
                   "Delivery attempts by receiver and result (ok, retry, rejected).", ["receiver", "result"])
PENDING = Gauge("lookout_alert_notifications_pending", "Notifications waiting for (another) attempt.", ["receiver"])
OLDEST_PENDING_SECONDS = Gauge("lookout_alert_notification_oldest_pending_seconds",
                               "Age of the oldest notification still waiting, per receiver (0: none).", ["receiver"])
