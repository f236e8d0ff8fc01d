"""The embedded overview: Lookout's dashboard without Grafana, served at / by `lookout up`.

The page draws the same panel specification as Grafana (dashboards.panels) and runs the
same SQL, expanded by dashboards.macros. Filter values from the request never become SQL
text: they travel as ClickHouse query parameters (macros.expand_parameterized), and the
time range and bucket size are numbers this module computes.

Mount it with `app.include_router(overview.router(lambda: client))`.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated

from clickhouse_connect.driver.client import Client
from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse

from dashboards import macros
from dashboards.panels import PANELS, VARIABLES, panel, spec_json
from dashboards.settings import DashboardSettings

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("lookout.stack").joinpath("static")))
REFRESH_S = 5
MAX_RANGE = timedelta(days=93)
MAX_VALUES = 50
_MEDIA = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".txt": "text/plain"}
_RELATIVE = re.compile(r"^now(?:-(\d{1,6})([smhd]))?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_QUERY_VARIABLES = {v.name for v in VARIABLES if v.kind == "query"}
# Listed in the OpenAPI so clients (and the fuzz tests) know the ids; others are a 404.
_PANEL_IDS = [p.id for p in PANELS]

Values = Annotated[list[str] | None, Query(max_length=MAX_VALUES)]


# What ClickHouse's DateTime64 holds: a time outside it is the caller's 400, not a failed query.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)


def parse_time(value: str, now: datetime, field: str = "time") -> datetime:
    """`now`, `now-15m` (s, m, h, d), epoch milliseconds, or ISO 8601 with a zone, between
    EARLIEST and LATEST; `field` names the parameter in the 400."""
    try:
        parsed = _parse_time(value, now)
    except (OverflowError, OSError, ValueError):  # past the ends of datetime itself
        parsed = None
    if parsed is None or not EARLIEST <= parsed <= LATEST:
        raise HTTPException(400, f"`{field}`: time {value[:40]!r} is outside {EARLIEST:%Y-%m-%d}..{LATEST:%Y-%m-%d}")
    return parsed


def _parse_time(value: str, now: datetime) -> datetime:
    m = _RELATIVE.match(value)
    if m:
        amount, unit = m.groups()
        return now - timedelta(seconds=int(amount) * _UNITS[unit]) if amount else now
    if value.isdigit() and len(value) <= 15:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"bad time {value[:40]!r}: use now, now-15m, epoch ms or ISO 8601") from None
    if parsed.tzinfo is None:
        raise HTTPException(400, "ISO 8601 times need a zone (Z or +00:00)")
    return parsed.astimezone(UTC)


def _time_range(from_: str, to: str) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    start, end = parse_time(from_, now, "from"), parse_time(to, now, "to")
    if not start < end:
        raise HTTPException(400, "`from` must be before `to`")
    if end - start > MAX_RANGE:
        raise HTTPException(400, f"the range may span at most {MAX_RANGE.days} days")
    return start, end


def _values(name: str, values: list[str] | None) -> list[str] | macros._All:
    if not values or values == ["$__all"]:
        return macros.ALL
    for v in values:
        if not 0 < len(v) <= 256 or any(ord(ch) < 32 for ch in v):
            raise HTTPException(400, f"bad value for {name}")
    return list(dict.fromkeys(values))


def _json_value(value: object) -> object:
    """ClickHouse values as JSON: times in epoch seconds (what uPlot plots), ids as text."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def router(client_factory: Callable[[], Client], *, settings: DashboardSettings | None = None) -> APIRouter:
    settings = settings or DashboardSettings()
    api = APIRouter(tags=["overview"])

    def run(sql: str, context: macros.QueryContext) -> tuple[list[str], list[list[object]]]:
        try:
            expanded, params = macros.expand_parameterized(sql, context)
        except macros.MacroError as exc:
            raise HTTPException(400, str(exc)) from exc
        try:
            result = client_factory().query(expanded, parameters=params)
        except Exception as exc:  # the store's message may quote SQL; log it, answer plainly
            log.exception("overview query failed")
            raise HTTPException(502, f"ClickHouse query failed: {type(exc).__name__}") from exc
        return list(result.column_names), [[_json_value(v) for v in row] for row in result.result_rows]

    def context(from_: str, to: str, filters: dict[str, list[str] | None]) -> macros.QueryContext:
        start, end = _time_range(from_, to)
        variables: dict[str, macros.VarValue] = {k: _values(k, v) for k, v in filters.items()}
        variables["daily_budget"] = float(settings.daily_budget_usd)
        return macros.QueryContext(start, end, macros.interval_for(start, end), variables)

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text())

    @api.get("/overview/static/{path:path}", include_in_schema=False)
    def static(path: str) -> FileResponse:
        target = (STATIC / path).resolve()
        if not target.is_relative_to(STATIC.resolve()) or not target.is_file() or target.suffix not in _MEDIA:
            raise HTTPException(404)
        return FileResponse(target, media_type=_MEDIA[target.suffix], headers={"Cache-Control": "no-cache"})

    @api.get("/overview/api/panels")
    def panels() -> dict:
        return {**spec_json(), "refresh_s": REFRESH_S, "daily_budget_usd": settings.daily_budget_usd}

    @api.get("/overview/api/panels/{panel_id}")
    def panel_data(
        panel_id: Annotated[str, PathParam(json_schema_extra={"enum": _PANEL_IDS})],
        from_: Annotated[str, Query(alias="from", max_length=40)] = "now-1h",
        to: Annotated[str, Query(max_length=40)] = "now",
        app: Values = None,
        model: Values = None,
        environment: Values = None,
    ) -> dict:
        if panel_id not in {p.id for p in PANELS}:
            raise HTTPException(404, "no such panel")
        p = panel(panel_id)
        ctx = context(from_, to, {"app": app, "model": model, "environment": environment})
        names, rows = run(p.sql, ctx)
        declared = [c.name for c in p.columns]
        if rows and names != declared:  # the spec is the contract the page draws by
            log.error("panel %s returned %s, declared %s", panel_id, names, declared)
            raise HTTPException(500, "panel returned unexpected columns")
        return {
            "id": p.id,
            "kind": p.kind,
            "unit": p.unit,
            "columns": [{"name": c.name, "type": c.type, "unit": c.unit} for c in p.columns],
            "series_column": p.series_column,
            "rows": rows,
            "from": ctx.time_from.timestamp(),
            "to": ctx.time_to.timestamp(),
            "interval_s": ctx.interval_s,
        }

    @api.get("/overview/api/variables/{name}")
    def variable_options(
        name: Annotated[str, PathParam(json_schema_extra={"enum": sorted(_QUERY_VARIABLES)})],
        from_: Annotated[str, Query(alias="from", max_length=40)] = "now-1h",
        to: Annotated[str, Query(max_length=40)] = "now",
        app: Values = None,
        model: Values = None,
    ) -> dict:
        if name not in _QUERY_VARIABLES:
            raise HTTPException(404, "no such variable")
        (variable,) = [v for v in VARIABLES if v.name == name]
        ctx = context(from_, to, {"app": app, "model": model, "environment": None})
        _, rows = run(variable.sql or "", ctx)
        return {"name": name, "options": [r[0] for r in rows]}

    return api
