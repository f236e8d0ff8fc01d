"""Build Grafana's provisioning from the panel and alert specifications.

`python -m lookout.dashboards.generate` rewrites dashboards/grafana/ (committed; a test checks that
regenerating gives the same bytes). `--out DIR` writes elsewhere, e.g. with thresholds
overridden by LOOKOUT_ALERT_* variables for one deployment.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

from . import alerts
from .chquery import DATASOURCE_TYPE, DATASOURCE_UID, ClickHouseQueryBuilder
from .panels import PANELS, VARIABLES, Axis, Panel
from .settings import DashboardSettings

DASHBOARD_UID = "lookout-overview"
DATASOURCE = models.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

# Beside the package in its distribution folder (dashboards/grafana/, where compose mounts it
# from), not package data: the files are the repository's, for deployments to take.
ROOT = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARD_FILE = Path("dashboards") / "lookout.json"
DATASOURCE_FILE = Path("provisioning") / "datasources" / "clickhouse.yaml"
PROVIDER_FILE = Path("provisioning") / "dashboards" / "lookout.yaml"
ALERTS_FILE = Path("provisioning") / "alerting" / "lookout-alerts.yaml"


def _layout(panels: tuple[Panel, ...]) -> list[models.GridPos]:
    """Left to right in Grafana's 24-column grid, wrapping when a panel does not fit."""
    x = y = row_h = 0
    out = []
    for p in panels:
        if x + p.width > 24:
            x, y, row_h = 0, y + row_h, 0
        out.append(models.GridPos(h=p.height, w=p.width, x=x, y=y))
        x, row_h = x + p.width, max(row_h, p.height)
    return out


def _panel_builder(p: Panel, panel_id: int, grid: models.GridPos):
    kind = {"timeseries": timeseries.Panel, "stat": stat.Panel, "table": table.Panel}[p.kind]
    builder = (
        kind()
        .id(panel_id)
        .title(p.title)
        .description(p.description)
        .datasource(DATASOURCE)
        .with_target(ClickHouseQueryBuilder("A", p.sql, table_format=p.kind != "timeseries"))
        .unit(p.unit)
        .grid_pos(grid)
        # The rollup is per minute: a shorter $__timeInterval would only split minutes.
        .interval("1m")
    )
    for col in p.columns:
        if not col.unit or col.unit == p.unit:
            continue
        overrides = [models.DynamicConfigValue(id_val="unit", value=col.unit)]
        if p.kind == "timeseries":
            overrides += [models.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
                          *_axis_overrides(col.axis)]
        builder = builder.override_by_name(col.name, overrides)
    if p.kind == "timeseries":
        axis = p.y_axis
        if axis.min is not None:
            builder = builder.min(axis.min)
        if axis.max is not None:
            builder = builder.max(axis.max)
        if axis.soft_max is not None:
            builder = builder.axis_soft_max(axis.soft_max)
    elif p.kind == "stat" and p.unit == "percentunit":
        builder = builder.min(0).max(1)
    return builder


def _axis_overrides(axis: Axis | None) -> list[models.DynamicConfigValue]:
    """A second axis' bounds, as field overrides (the panel's are its defaults)."""
    if axis is None:
        return []
    bounds = (("min", axis.min), ("max", axis.max), ("custom.axisSoftMax", axis.soft_max))
    return [models.DynamicConfigValue(id_val=key, value=value) for key, value in bounds if value is not None]


def _variables(settings: DashboardSettings) -> list[cogbuilder.Builder[models.VariableModel]]:
    out: list[cogbuilder.Builder[models.VariableModel]] = []
    for v in VARIABLES:
        if v.kind == "query":
            out.append(
                dash.QueryVariable(v.name)
                .label(v.label)
                .datasource(DATASOURCE)
                .query(v.sql or "")
                .multi(True)
                .include_all(True)
                .allow_custom_value(False)
                .current(models.VariableOption(text="All", value="$__all", selected=True))
                .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(models.VariableSort.ALPHABETICAL_ASC)
            )
        else:
            # A constant, not a textbox: a dashboard viewer cannot type SQL into it.
            out.append(dash.ConstantVariable(v.name).label(v.label).value(_number(settings.daily_budget_usd)))
    return out


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def build_dashboard(settings: DashboardSettings) -> dict:
    builder = (
        dash.Dashboard("Lookout: LLM apps in production")
        .uid(DASHBOARD_UID)
        .tags(["lookout", "llm"])
        .description("Traffic, latency, errors, tokens, cost, quality, drift, feedback and retrains per app and model.")
        .timezone("utc")
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .editable()
        .variables(_variables(settings))
    )
    for i, (p, grid) in enumerate(zip(PANELS, _layout(PANELS), strict=True), start=1):
        builder = builder.with_panel(_panel_builder(p, i, grid))
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def datasource_yaml() -> str:
    # Grafana expands $VARS in datasource provisioning files, so one file serves every
    # deployment; compose.yaml sets them. The plugin talks the native protocol on 9000, as
    # a read-only ClickHouse user (deploy/clickhouse/users.d/grafana-reader.xml): panels
    # and alerts only read, and whoever may edit a panel may send it any SQL.
    return f"""# Generated by lookout.dashboards.generate: do not edit.
apiVersion: 1
datasources:
  - name: ClickHouse (Lookout)
    uid: {DATASOURCE_UID}
    type: {DATASOURCE_TYPE}
    isDefault: true
    editable: false
    jsonData:
      host: ${{CLICKHOUSE_HOST}}
      port: ${{CLICKHOUSE_PORT}}
      protocol: ${{CLICKHOUSE_PROTOCOL}}
      secure: ${{CLICKHOUSE_SECURE}}
      username: ${{CLICKHOUSE_READER_USER}}
      defaultDatabase: ${{CLICKHOUSE_DATABASE}}
    secureJsonData:
      password: ${{CLICKHOUSE_READER_PASSWORD}}
"""


def provider_yaml() -> str:
    return """# Generated by lookout.dashboards.generate: do not edit.
apiVersion: 1
providers:
  - name: lookout
    orgId: 1
    folder: Lookout
    type: file
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: /var/lib/grafana/dashboards/lookout
      foldersFromFilesStructure: false
"""


def render(settings: DashboardSettings) -> dict[Path, str]:
    """Every generated file, by path relative to dashboards/grafana/."""
    return {
        DASHBOARD_FILE: json.dumps(build_dashboard(settings), indent=2, sort_keys=True) + "\n",
        DATASOURCE_FILE: datasource_yaml(),
        PROVIDER_FILE: provider_yaml(),
        ALERTS_FILE: alerts.render_yaml(settings, datasource_uid=DATASOURCE_UID, datasource_type=DATASOURCE_TYPE),
    }


def write(out: Path, settings: DashboardSettings) -> list[Path]:
    written = []
    for rel, text in render(settings).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="folder to write into (default: dashboards/grafana)")
    args = parser.parse_args(argv)
    for path in write(args.out, DashboardSettings()):
        print(path)


if __name__ == "__main__":
    main()
