"""Lookout alerts: the rules of dashboards/alerts.py evaluated against ClickHouse, state and
history kept there, notifications to a signed webhook, Slack and PagerDuty."""
