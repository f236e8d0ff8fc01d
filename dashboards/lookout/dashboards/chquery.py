"""A raw-SQL target of the grafana-clickhouse-datasource plugin, for grafana-foundation-sdk
builders (the SDK ships builders for core datasources only)."""

from __future__ import annotations

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants

from .datasource import DATASOURCE_TYPE, DATASOURCE_UID

# The plugin's query formats (sqlutil.FormatQueryOption): time series frames are pivoted
# from long to wide, so a string column becomes one series per value; alert queries use
# tables, whose string columns become the alert instance's labels.
FORMAT_TIMESERIES = 0
FORMAT_TABLE = 1


class ClickHouseQuery(cogvariants.Dataquery):
    def __init__(self, ref_id: str, sql: str, *, table_format: bool) -> None:
        self.ref_id = ref_id
        self.sql = sql
        self.table_format = table_format

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "editorType": "sql",
            "queryType": "table" if self.table_format else "timeseries",
            "format": FORMAT_TABLE if self.table_format else FORMAT_TIMESERIES,
            "rawSql": self.sql,
        }


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    def __init__(self, ref_id: str, sql: str, *, table_format: bool) -> None:
        self._query = ClickHouseQuery(ref_id, sql, table_format=table_format)

    def build(self) -> ClickHouseQuery:
        return self._query
