"""Lookout alerts: the rules of lookout.dashboards.alerts evaluated against ClickHouse, state and
history kept there, notifications to a signed webhook, Slack and PagerDuty."""
