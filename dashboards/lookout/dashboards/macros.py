"""Expand a panel's SQL the way Grafana and the grafana-clickhouse-datasource plugin do.

Grafana runs three passes, in this order, and so does `expand`:

1. `$__conditionalAll(condition, $var)` (plugin, in the browser): the condition becomes
   `1=1` when the variable is All or empty, else it stays.
2. Template variables (Grafana's template service with the plugin's formatter): `$var`,
   `${var}` and `${var:format}`. A multi-value list renders as `'a','b'` (the plugin's
   default, unescaped) or with a named format (`singlequote` escapes `'` as `\\'`,
   `sqlstring` doubles it, neither escapes a backslash; `percentencode` is RFC 3986
   percent-encoding of the value, a list as `{a,b}` first); a single value renders raw.
   Names that are not variables stay, which is how `$__timeFilter` survives to the next pass.
3. The plugin's backend macros (sqlds): `$__name` at a word boundary, with an optional
   argument list split on top-level commas: fromTime, toTime, timeFilter, dateFilter,
   dateTimeFilter/dt, timeInterval, interval_s and their _ms forms.

`expand_parameterized` runs the same passes but renders variable values as ClickHouse query
parameters, so values from an HTTP request never become SQL text: a quoted
`'${app:percentencode}'` becomes `{v_app:String}` holding the very text Grafana would have
put between the quotes, so the panel's own decoding runs on it unchanged.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal
from urllib.parse import quote_from_bytes


class MacroError(ValueError):
    pass


class _All(enum.Enum):
    """The value of a variable set to All (Grafana's `$__all`); an enum member, so `is ALL`
    narrows the type (PEP 484's sentinel)."""

    ALL = "ALL"

    def __repr__(self) -> str:
        return "ALL"


ALL: Final = _All.ALL

VarValue = Literal[_All.ALL] | str | float | int | Sequence[str]


@dataclass(frozen=True)
class QueryContext:
    time_from: datetime
    time_to: datetime
    interval_s: float = 60.0  # Grafana's $__interval for the panel, in seconds
    variables: Mapping[str, VarValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for t in (self.time_from, self.time_to):
            if t.tzinfo is None:
                raise MacroError("time range bounds must be timezone-aware")
        if self.time_to < self.time_from:
            raise MacroError("time range ends before it starts")


# ---- pass 1: $__conditionalAll -------------------------------------------------------

_CONDITIONAL_ALL = "$__conditionalAll("
_JS_REPLACEMENT = re.compile(r"\$[$&`'0-9<]")
_VAR_IN_ARG = re.compile(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+")


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the call whose '(' is at open_paren, split on top-level commas, and the
    index just past its ')'. Like the plugin, only parentheses count (not quotes)."""
    depth = 0
    args: list[str] = []
    start = open_paren + 1
    for i in range(open_paren, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
    raise MacroError(f"unbalanced parentheses after {sql[max(0, open_paren - 20):open_paren + 20]!r}")


def _is_all(value: VarValue | None) -> bool:
    if value is None or value is ALL:
        return True
    if isinstance(value, str):
        return value in ("", "$__all")
    if isinstance(value, Sequence):
        return len(value) == 0 or list(value) == ["$__all"]
    return False


def _apply_conditional_all(sql: str, variables: Mapping[str, VarValue]) -> str:
    # The plugin works from the last occurrence backwards, so nested ones resolve inside out.
    at = sql.rfind(_CONDITIONAL_ALL)
    while at != -1:
        args, end = _macro_args(sql, at + len(_CONDITIONAL_ALL) - 1)
        if len(args) != 2:
            raise MacroError(f"$__conditionalAll takes 2 arguments, got {len(args)}")
        condition, var_arg = args
        found = _VAR_IN_ARG.search(var_arg.strip())
        if not found:
            raise MacroError(f"$__conditionalAll's second argument names no variable: {var_arg!r}")
        name = found.group(0)
        if name not in variables:
            raise MacroError(f"unknown template variable {name!r}")
        phrase = "1=1" if _is_all(variables[name]) else condition
        if _JS_REPLACEMENT.search(phrase):
            # The plugin splices the phrase in with String.prototype.replace, which reads these
            # as replacement patterns: the query Grafana sent would not be this text.
            raise MacroError(f"$__conditionalAll condition holds a JS replacement pattern: {phrase[:60]!r}")
        sql = sql[:at] + phrase + sql[end:]
        at = sql.rfind(_CONDITIONAL_ALL)
    return sql


# ---- pass 2: template variables ------------------------------------------------------

_TEMPLATE_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")

Renderer = Callable[[str, str | None, VarValue], str]


def _substitute(sql: str, variables: Mapping[str, VarValue], render: Renderer) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name not in variables:
            return m.group(0)  # not a variable (e.g. $__timeFilter): left for the macro pass
        return render(name, m.group(2), variables[name])

    return _TEMPLATE_VAR.sub(one, sql)


def _js_string(value: str | float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # JavaScript prints 100.0 as 100
    return str(value)


def percent_encode(value: VarValue) -> str:
    """Grafana's `percentencode` format: encodeURIComponent with !'()* escaped too, so the
    text holds only A-Z a-z 0-9 - _ . ~ and %XX; a list is encoded as `{a,b}`."""
    if value is ALL:
        raise MacroError("percentencode of All: keep All inside $__conditionalAll")
    if isinstance(value, str | int | float):
        text = _js_string(value)
    else:
        text = "{" + ",".join(_js_string(v) for v in value) + "}"
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: encodeURIComponent throws URIError
        raise MacroError(f"value cannot be percent-encoded: {exc.reason}") from None
    return quote_from_bytes(data, safe="")


def _text_value(name: str, fmt: str | None, value: VarValue) -> str:
    if value is ALL:
        # Grafana would list every option here; the panels keep All inside $__conditionalAll.
        raise MacroError(f"variable {name!r} is All outside $__conditionalAll; pass its values")
    if fmt == "percentencode":
        return percent_encode(value)
    if isinstance(value, int | float):
        return repr(value)
    values = [value] if isinstance(value, str) else list(value)
    if fmt is None:
        # The plugin's formatter: lists are quoted and joined, a single string stays raw.
        return value if isinstance(value, str) else "'" + "','".join(values) + "'"
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "raw":
        return ",".join(values)
    raise MacroError(f"unsupported variable format {fmt!r} for {name!r}")


# ---- pass 3: the plugin's macros -----------------------------------------------------


def _unix(t: datetime) -> int:
    return math.floor(t.timestamp())


def _unix_ms(t: datetime) -> int:
    return math.floor(t.timestamp() * 1000)


def _date(t: datetime) -> str:
    return f"toDate('{t.astimezone(UTC):%Y-%m-%d}')"


def _args(name: str, args: list[str], n: int) -> list[str]:
    if len(args) != n:
        raise MacroError(f"$__{name}: expected {n} argument(s), received {len(args)}")
    return args


def _plugin_macros(ctx: QueryContext) -> dict[str, Callable[[list[str]], str]]:
    f, t = ctx.time_from, ctx.time_to
    dt_f, dt_t = f"toDateTime({_unix(f)})", f"toDateTime({_unix(t)})"
    ms_f, ms_t = f"fromUnixTimestamp64Milli({_unix_ms(f)})", f"fromUnixTimestamp64Milli({_unix_ms(t)})"
    seconds = int(max(ctx.interval_s, 1))
    millis = int(max(ctx.interval_s * 1000, 1))

    d_f, d_t = _date(f), _date(t)

    def between(name: str, lo: str, hi: str) -> Callable[[list[str]], str]:
        """A filter macro of one column: the column within [lo, hi]."""

        def expand(a: list[str]) -> str:
            (col,) = _args(name, a, 1)
            return f"{col} >= {lo} AND {col} <= {hi}"

        return expand

    def date_time_filter(a: list[str]) -> str:
        d, c = _args("dateTimeFilter", a, 2)
        return f"({d} >= {d_f} AND {d} <= {d_t}) AND ({c} >= {dt_f} AND {c} <= {dt_t})"

    def time_interval(a: list[str]) -> str:
        (col,) = _args("timeInterval", a, 1)
        return f"toStartOfInterval(toDateTime({col}), INTERVAL {seconds} second)"

    def time_interval_ms(a: list[str]) -> str:
        (col,) = _args("timeInterval_ms", a, 1)
        return f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {millis} millisecond)"

    return {
        "fromTime": lambda a: dt_f,
        "toTime": lambda a: dt_t,
        "fromTime_ms": lambda a: ms_f,
        "toTime_ms": lambda a: ms_t,
        "timeFilter": between("timeFilter", dt_f, dt_t),
        "timeFilter_ms": between("timeFilter_ms", ms_f, ms_t),
        "dateFilter": between("dateFilter", d_f, d_t),
        "dateTimeFilter": date_time_filter,
        "dt": date_time_filter,
        "timeInterval": time_interval,
        "timeInterval_ms": time_interval_ms,
        "interval_s": lambda a: str(seconds),
    }


_MACRO = re.compile(r"\$__(\w+)\b")


def _apply_plugin_macros(sql: str, ctx: QueryContext) -> str:
    macros = _plugin_macros(ctx)
    out: list[str] = []
    pos = 0
    for m in _MACRO.finditer(sql):
        if m.start() < pos:
            continue  # inside the arguments of a macro already expanded
        name = m.group(1)
        if name not in macros:
            raise MacroError(f"unknown macro $__{name}")
        end = m.end()
        args: list[str] = []
        if sql.startswith("(", end):
            raw, end = _macro_args(sql, end)
            args = [a.strip() for a in raw] if raw != [""] else []
        out.append(sql[pos : m.start()])
        out.append(macros[name](args))
        pos = end
    out.append(sql[pos:])
    return "".join(out)


# ---- entry points ----------------------------------------------------------------------


def expand(sql: str, ctx: QueryContext) -> str:
    """The SQL text the plugin sends to ClickHouse for this context."""
    sql = _apply_conditional_all(sql, ctx.variables)
    sql = _substitute(sql, ctx.variables, _text_value)
    return _apply_plugin_macros(sql, ctx)


def _param_type(name: str, value: VarValue) -> str:
    if isinstance(value, bool):
        raise MacroError(f"variable {name!r}: booleans are not supported")
    if isinstance(value, int | float):
        return "Float64"
    if isinstance(value, str):
        return "String"
    return "Array(String)"


_QUOTED_PERCENT = re.compile(r"'\$\{(\w+):percentencode\}'")


def expand_parameterized(sql: str, ctx: QueryContext) -> tuple[str, dict[str, object]]:
    """Like `expand`, but each variable becomes a ClickHouse query parameter.

    `'${app:percentencode}'` turns into `{v_app:String}` with the percent-encoded text as
    its value, the same string the text form has between its quotes. Other references
    become typed parameters: `col IN (${app:singlequote})` turns into
    `col IN ({v_app:Array(String)})`. Either way no value is ever parsed as SQL.
    """
    params: dict[str, object] = {}

    def encoded(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in ctx.variables:
            return m.group(0)
        key = f"v_{name}"
        params[key] = percent_encode(ctx.variables[name])
        return "{" + key + ":String}"

    def render(name: str, fmt: str | None, value: VarValue) -> str:
        if value is ALL:
            raise MacroError(f"variable {name!r} is All outside $__conditionalAll; pass its values")
        key = f"v_{name}"
        if isinstance(value, str | int | float):
            params[key] = value
        else:
            params[key] = [str(v) for v in value]
        return "{" + key + ":" + _param_type(name, value) + "}"

    sql = _apply_conditional_all(sql, ctx.variables)
    sql = _QUOTED_PERCENT.sub(encoded, sql)
    sql = _substitute(sql, ctx.variables, render)
    return _apply_plugin_macros(sql, ctx), params


# Grafana rounds the raw interval (range / max data points) to one of these steps.
_NICE_STEPS_S: Final = (
    1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    604800, 2592000,
)


def interval_for(time_from: datetime, time_to: datetime, *, max_points: int = 240, min_s: int = 60) -> int:
    """The bucket size a panel gets for a range: about max_points buckets, a "nice" step,
    never under min_s (the panels set a 1 minute minimum: the rollup is per minute)."""
    raw = (time_to - time_from).total_seconds() / max(max_points, 1)
    step = next((s for s in _NICE_STEPS_S if s >= raw), _NICE_STEPS_S[-1])
    return max(step, min_s)
