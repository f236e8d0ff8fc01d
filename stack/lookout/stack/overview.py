"""The embedded overview: Lookout's dashboard without Grafana, served at / by `lookout up`.

The page draws the same panel specification as Grafana (lookout.dashboards.panels) and runs the
same SQL, expanded by lookout.dashboards.macros. Filter values from the request never become SQL
text: they travel as ClickHouse query parameters (macros.expand_parameterized), and the
time range and bucket size are numbers this module computes.

The data needs a viewer (overview_access): a read key or a review UI session, and a viewer
limited to some apps sees only theirs, whatever the request's filters say; that holds for
the alerts the page lists too (lookout.alerts' instances, scoped by their app).

The default time range fits the data (`/overview/api/range`): from the minute before the
first stored one (at most 6 h back, like Grafana's default) to now, at least 5 minutes, so
a fresh install's first minutes fill the charts instead of sitting at the edge of an hour. Every route,
the page included, answers only to allowed Host names (DNS rebinding). The page and its
static files are public (they hold no data); the page asks the viewer to sign in.

Mount it with `app.include_router(overview.router(lambda: client, keys=ApiKeyStore(client)))`.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated

from clickhouse_connect.driver.client import Client
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse

from lookout.core.api_errors import ApiError, error_router
from lookout.core.auth import ApiKeyStore
from lookout.core.session import Session
from lookout.dashboards import alerts as alert_rules
from lookout.dashboards import macros
from lookout.dashboards.panels import CALLS_FILTER, PANELS, VARIABLES, Panel, panel, spec_json
from lookout.dashboards.settings import DashboardSettings

from .overview_access import OverviewSettings, SessionLookup, Viewer, host_check, viewer_of

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("lookout.stack").joinpath("static")))
REFRESH_S = 5
MAX_RANGE = timedelta(days=93)
# The panels compare with toDateTime (seconds, 1970 to 2106): a time outside that is the
# caller's 422, not a wrapped or failed query.
EARLIEST, LATEST = datetime(1970, 1, 2, tzinfo=UTC), datetime(2105, 12, 31, tzinfo=UTC)
MAX_VALUES = 50
# The fitted range: the data of the last week, at most the last 6 h of it, at least 5 min.
FIT_LOOKBACK = timedelta(days=7)
FIT_MAX = timedelta(hours=6)
FIT_MIN = timedelta(minutes=5)
FIT_EMPTY = timedelta(hours=1)
_MEDIA = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".txt": "text/plain"}
_RELATIVE = re.compile(r"^now(?:-(\d{1,6})([smhd]))?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_QUERY_VARIABLES = {v.name for v in VARIABLES if v.kind == "query"}
# Listed in the OpenAPI so clients (and the fuzz tests) know the ids; others are a 404.
_PANEL_IDS = [p.id for p in PANELS]

Values = Annotated[list[str] | None, Query(max_length=MAX_VALUES)]


def parse_time(value: str, now: datetime, field: str = "from") -> datetime:
    """`now`, `now-15m` (s, m, h, d), epoch milliseconds, or ISO 8601 with a zone."""
    m = _RELATIVE.match(value)
    try:
        if m:
            amount, unit = m.groups()
            parsed = now - timedelta(seconds=int(amount) * _UNITS[unit]) if amount else now
        elif value.isdigit() and len(value) <= 15:
            parsed = datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        else:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise ApiError(422, "ISO 8601 times need a zone (Z or +00:00)", field=field)
            parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiError(422, f"bad time {value[:40]!r}: use now, now-15m, epoch ms or ISO 8601", field=field) from None
    if not EARLIEST <= parsed <= LATEST:
        raise ApiError(422, f"time {value[:40]!r} is outside {EARLIEST.year}-{LATEST.year}", field=field)
    return parsed


def _time_range(from_: str, to: str) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    start, end = parse_time(from_, now, "from"), parse_time(to, now, "to")
    if not start < end:
        raise ApiError(422, "`from` must be before `to`", field="from")
    if end - start > MAX_RANGE:
        raise ApiError(422, f"the range may span at most {MAX_RANGE.days} days", field="from")
    return start, end


def _values(name: str, values: list[str] | None) -> list[str] | macros._All:
    if not values or values == ["$__all"]:
        return macros.ALL
    for v in values:
        if not 0 < len(v) <= 256 or any(ord(ch) < 32 for ch in v):
            raise ApiError(422, f"bad value for {name}: 1 to 256 characters, no control characters", field=name)
        if "," in v or (v.startswith("{") and v.endswith("}")):
            # The panels' SQL reads Grafana's percent-encoded {a,b}: such a value is a list there.
            raise ApiError(422, f"bad value for {name}: a comma, or braces around it, would read as a list",
                           field=name)
    return list(dict.fromkeys(values))


def scoped_apps(viewer: Viewer, requested: list[str] | macros._All) -> list[str] | macros._All:
    """The apps a request may filter by: what it asked, within what the viewer may read;
    All is every app for a viewer of every app, else exactly the viewer's apps."""
    if viewer.apps is None:
        return requested
    if not viewer.apps:
        raise ApiError(403, f"{viewer.name} may read no app: an admin assigns apps to reviewers")
    if requested is macros.ALL:
        return sorted(viewer.apps)
    outside = [a for a in requested if a not in viewer.apps]
    if outside:
        raise ApiError(403, f"{viewer.name} may not read app {outside[0][:128]!r}", field="app")
    return requested


def fit_range(first: datetime | None, last: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """A range that shows the data: from its first minute (a bucket before it, so the first
    point is not on the edge), no more than FIT_MAX before its last, at least FIT_MIN, to now."""
    if first is None or last is None:
        return now - FIT_EMPTY, now
    start = max(first, last - FIT_MAX).replace(second=0, microsecond=0) - timedelta(minutes=1)
    start = min(start, now - FIT_MIN)
    return max(start, now - FIT_LOOKBACK), now


def visible(p: Panel, viewer: Viewer) -> bool:
    return p.per_app or viewer.apps is None


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


def _alert_reads():
    """lookout.alerts' reads when the alert service is installed (the stack does not need it)."""
    try:
        from lookout.alerts import store
    except ImportError:
        return None
    return store


def review_sessions(client: Client) -> SessionLookup | None:
    """The feedback service's own session check (Accounts.session) on this client (through
    the client's one Session, so its queries take the lock every user of the client takes),
    when the feedback service is installed; the overview then takes review UI cookies too."""
    try:
        from lookout.feedback.accounts import Accounts
    except ImportError:
        return None
    # The TTL is for sessions Accounts creates at login; this one only verifies. Its 5 s
    # cache means a logout on the review UI reaches the overview within 5 s.
    return Accounts(client, session_ttl_s=3600).session


def router(
    client_factory: Callable[[], Client],
    *,
    keys: ApiKeyStore,
    sessions: SessionLookup | None = None,
    bound_host: str = "127.0.0.1",
    settings: DashboardSettings | None = None,
    access: OverviewSettings | None = None,
) -> APIRouter:
    """The page, its static files and /overview/api/*. `keys` verifies Bearer keys;
    `sessions` (the feedback service's Accounts.session) verifies review UI cookies, and
    without it only keys are accepted."""
    settings = settings or DashboardSettings()
    access = access or OverviewSettings()
    check_host = host_check(bound_host, access.allowed_names())
    api = error_router(tags=["overview"], dependencies=[Depends(check_host)])

    async def viewer(request: Request) -> Viewer:
        return await viewer_of(request, keys, sessions)

    def run(sql: str, context: macros.QueryContext) -> tuple[list[str], list[list[object]]]:
        try:
            expanded, params = macros.expand_parameterized(sql, context)
        except macros.MacroError as exc:
            raise ApiError(422, str(exc)) from exc
        try:
            # The client's one Session: its lock is the one the key store takes on it too.
            result = Session.of(client_factory()).query(expanded, parameters=params)
        except Exception as exc:  # the store's message may quote SQL; log it, answer plainly
            log.exception("overview query failed")
            raise ApiError(502, f"ClickHouse query failed: {type(exc).__name__}") from exc
        return list(result.column_names), [[_json_value(v) for v in row] for row in result.result_rows]

    def context(who: Viewer, from_: str, to: str, filters: dict[str, list[str] | None]) -> macros.QueryContext:
        start, end = _time_range(from_, to)
        chosen = {k: _values(k, v) for k, v in filters.items()}
        variables: dict[str, macros.VarValue] = {**chosen, "app": scoped_apps(who, chosen["app"]),
                                                 "daily_budget": float(settings.daily_budget_usd)}
        return macros.QueryContext(start, end, macros.interval_for(start, end), variables)

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(), headers={"Cache-Control": "no-cache"})

    @api.get("/overview/static/{path:path}", include_in_schema=False)
    def static(path: str) -> FileResponse:
        target = (STATIC / path).resolve()
        if not target.is_relative_to(STATIC.resolve()) or not target.is_file() or target.suffix not in _MEDIA:
            raise ApiError(404, "no such file")
        return FileResponse(target, media_type=_MEDIA[target.suffix], headers={"Cache-Control": "no-cache"})

    @api.get("/overview/api/auth")
    def auth() -> dict:
        """How a viewer may sign in here (public: the page asks before it has a viewer)."""
        return {"review_login": sessions is not None, "key": True}

    @api.get("/overview/api/me")
    def me(who: Viewer = Depends(viewer)) -> dict:
        return who.to_json()

    @api.get("/overview/api/panels")
    def panels(who: Viewer = Depends(viewer)) -> dict:
        spec = spec_json()
        spec["panels"] = [p for p in spec["panels"] if visible(panel(p["id"]), who)]
        return {**spec, "refresh_s": REFRESH_S, "daily_budget_usd": settings.daily_budget_usd,
                "viewer": who.to_json(),
                "alert_panels": [{"uid": r.uid, "panel": r.panel_id} for r in alert_rules.RULES]}

    @api.get("/overview/api/panels/{panel_id}")
    def panel_data(
        panel_id: Annotated[str, PathParam(json_schema_extra={"enum": _PANEL_IDS})],
        who: Viewer = Depends(viewer),
        from_: Annotated[str, Query(alias="from", max_length=40)] = "now-1h",
        to: Annotated[str, Query(max_length=40)] = "now",
        app: Values = None,
        model: Values = None,
        environment: Values = None,
    ) -> dict:
        if panel_id not in {p.id for p in PANELS}:
            raise ApiError(404, "no such panel")
        p = panel(panel_id)
        if not visible(p, who):
            raise ApiError(403, f"{p.title} is not kept per app: only a viewer of every app sees it")
        ctx = context(who, from_, to, {"app": app, "model": model, "environment": environment})
        names, rows = run(p.sql, ctx)
        declared = [c.name for c in p.columns]
        if rows and names != declared:  # the spec is the contract the page draws by
            log.error("panel %s returned %s, declared %s", panel_id, names, declared)
            raise ApiError(500, "panel returned unexpected columns")
        return {
            "id": p.id,
            "kind": p.kind,
            "unit": p.unit,
            "columns": [c.to_json() for c in p.columns],
            "axis": asdict(p.y_axis),
            "series_column": p.series_column,
            "rows": rows,
            "from": ctx.time_from.timestamp(),
            "to": ctx.time_to.timestamp(),
            "interval_s": ctx.interval_s,
        }

    @api.get("/overview/api/range")
    def fitted_range(
        who: Viewer = Depends(viewer),
        app: Values = None,
        model: Values = None,
        environment: Values = None,
    ) -> dict:
        """The time range that fits the viewer's data under these filters (see fit_range)."""
        now = datetime.now(UTC)
        ctx = context(who, f"now-{FIT_LOOKBACK.days}d", "now", {"app": app, "model": model, "environment": environment})
        _, rows = run(f"SELECT min(minute) AS first, max(minute) AS last, count() AS n FROM calls_1m "
                      f"WHERE {CALLS_FILTER}", ctx)
        found = bool(rows and rows[0][2])
        first = datetime.fromtimestamp(float(rows[0][0]), UTC) if found else None  # type: ignore[arg-type]
        last = datetime.fromtimestamp(float(rows[0][1]), UTC) if found else None  # type: ignore[arg-type]
        start, end = fit_range(first, last, now)
        return {"from": start.timestamp(), "to": end.timestamp(), "first": rows[0][0] if found else None,
                "last": rows[0][1] if found else None}

    @api.get("/overview/api/alerts")
    def firing(who: Viewer = Depends(viewer), app: Values = None) -> dict:
        """Alert instances now Pending, Alerting or Error, of the apps the viewer may read (and
        has selected); instances that are no app's only for viewers of every app."""
        reads = _alert_reads()
        if reads is None:
            return {"available": False, "alerts": [], "delivery_problems": []}
        apps = scoped_apps(who, _values("app", app))
        scope = frozenset(apps) if isinstance(apps, list) else None
        session = Session.of(client_factory())
        try:
            found = reads.active_alerts_sync(session, scope)
            problems = reads.failed_notifications_sync(session) if who.apps is None else []
        except Exception as exc:
            log.exception("overview alerts query failed")
            raise ApiError(502, f"ClickHouse query failed: {type(exc).__name__}") from exc
        return {"available": True, "alerts": found, "delivery_problems": problems}

    @api.get("/overview/api/variables/{name}")
    def variable_options(
        name: Annotated[str, PathParam(json_schema_extra={"enum": sorted(_QUERY_VARIABLES)})],
        who: Viewer = Depends(viewer),
        from_: Annotated[str, Query(alias="from", max_length=40)] = "now-1h",
        to: Annotated[str, Query(max_length=40)] = "now",
        app: Values = None,
        model: Values = None,
    ) -> dict:
        if name not in _QUERY_VARIABLES:
            raise ApiError(404, "no such variable")
        (variable,) = [v for v in VARIABLES if v.name == name]
        ctx = context(who, from_, to, {"app": app, "model": model, "environment": None})
        _, rows = run(variable.sql or "", ctx)
        options = [r[0] for r in rows]
        if name == "app" and who.apps is not None:  # the app list is the one query without $app
            options = [o for o in options if o in who.apps]
        return {"name": name, "options": options}

    return api
