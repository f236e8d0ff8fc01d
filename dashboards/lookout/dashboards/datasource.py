"""The Grafana datasource every panel and alert rule queries (provisioned by generate.py)."""

DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "lookout-clickhouse"
