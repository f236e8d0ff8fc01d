"""Grafana's annotation templates (Go text/template with Prometheus' functions), for the
subset the alert spec writes, so Lookout's evaluator sends the summary Grafana would.

A template is text with `{{ pipeline }}` actions. A pipeline is an operand and then
`| function args...` steps, each step's input passed as its last argument, as in Go:

- operands: `$labels.<name>`, `$values.<ref>.Value` (A: the query's value, B: the
  threshold's 1 or 0), `$value` (the query's value), a "quoted string" or a number;
- functions: `printf "<format>"` (%f %.Nf %g %e %d %s %v %% with flags and widths),
  `humanize`, `humanizePercentage`, `humanizeDuration`, `toUpper`, `toLower`, `title`.

Anything else is a TemplateError when the spec is loaded (a test renders every rule's
summary), never a half-rendered page at 3 a.m. A missing label renders as Go does,
`<no value>`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

NO_VALUE = "<no value>"
_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(\|)|([^\s|"]+))')
_PRINTF = re.compile(r"%([-+ #0]*)(\d+)?(?:\.(\d+))?([fFgGeEdsv%])")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Context:
    labels: Mapping[str, str]
    value: float | None  # the query's value (ref A)
    condition: bool = True  # the threshold's result (ref B)


def _go_float(v: float) -> str:
    """Go's %v of a float64: the shortest repr, exponent form outside 1e-4..1e21."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e21:
        return str(int(v))
    text = repr(v)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        return f"{mantissa}e{sign}{abs(int(exp)):02d}"
    return text


def _text(v: object) -> str:
    if v is None:
        return NO_VALUE
    if isinstance(v, float):
        return _go_float(v)
    return str(v)


def _number(v: object, fn: str) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise TemplateError(f"{fn} needs a number, got {_text(v)!r}")


def printf(fmt: str, *args: object) -> str:
    out, pos, used = [], 0, 0
    for m in _PRINTF.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, precision, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[used]
        used += 1
        spec = f"%{flags}{width or ''}{'.' + precision if precision is not None else ''}"
        if verb in "fFgGeE":
            out.append((spec + verb) % _number(arg, "printf"))
        elif verb == "d":
            value = _number(arg, "printf")
            out.append((spec + "d") % int(value) if value == int(value) else f"%!d(float64={_go_float(value)})")
        else:  # s, v
            out.append((spec + "s") % _text(arg))
    out.append(fmt[pos:])
    return "".join(out)


_SI = [(1e24, "Y"), (1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
_SI_SMALL = [(1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f"), (1e-18, "a"), (1e-21, "z"),
             (1e-24, "y")]


def humanize(v: object) -> str:
    """Prometheus' humanize: SI prefixes, 4 significant digits."""
    x = _number(v, "humanize")
    if x == 0 or math.isnan(x) or math.isinf(x):
        return f"{x:.4g}"
    if abs(x) >= 1:
        for scale, prefix in _SI:
            if abs(x) >= scale:
                return f"{x / scale:.4g}{prefix}"
        return f"{x:.4g}"
    for scale, prefix in _SI_SMALL:
        if abs(x) >= scale:
            return f"{x / scale:.4g}{prefix}"
    return f"{x:.4g}"


def humanize_percentage(v: object) -> str:
    return f"{_number(v, 'humanizePercentage') * 100:.4g}%"


def humanize_duration(v: object) -> str:
    """Prometheus' humanizeDuration: `1d 2h 3m 4s`, or `1.5s`, `250ms` under a minute."""
    x = _number(v, "humanizeDuration")
    if math.isnan(x) or math.isinf(x):
        return f"{x:.4g}"
    if abs(x) >= 1:
        sign = "-" if x < 0 else ""
        x = abs(x)
        days, rem = divmod(int(x), 86400)
        hours, rem = divmod(rem, 3600)
        minutes, seconds = divmod(rem, 60)
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{x:.4g}s"
    if x == 0:
        return "0s"
    for scale, prefix in _SI_SMALL:
        if abs(x) >= scale:
            return f"{x / scale:.4g}{prefix}s"
    return f"{x:.4g}s"


FUNCTIONS: dict[str, Callable[..., str]] = {
    "printf": printf,
    "humanize": humanize,
    "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration,
    "toUpper": lambda v: _text(v).upper(),
    "toLower": lambda v: _text(v).lower(),
    "title": lambda v: _text(v).title(),
}


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot read {text[pos:pos + 30]!r}")
        out.append(m.group(1) or m.group(2) or m.group(3))
        pos = m.end()
    return out


def _literal(token: str) -> object:
    if token.startswith('"'):
        return bytes(token[1:-1], "utf-8").decode("unicode_escape")
    try:
        return float(token) if any(c in token for c in ".eE") else int(token)
    except ValueError:
        raise TemplateError(f"unknown operand {token!r}") from None


def _operand(token: str, ctx: Context) -> object:
    if token == "$value":
        return ctx.value
    if token.startswith("$labels."):
        return ctx.labels.get(token[len("$labels."):])
    if token.startswith("$values."):
        ref, _, field = token[len("$values."):].partition(".")
        if field != "Value" or ref not in ("A", "B"):
            raise TemplateError(f"unknown value {token!r}: use $values.A.Value or $values.B.Value")
        return ctx.value if ref == "A" else float(ctx.condition)
    if token.startswith("$") or token.startswith("."):
        raise TemplateError(f"unknown variable {token!r}")
    return _literal(token)


def _pipeline(source: str, ctx: Context) -> str:
    steps: list[list[str]] = [[]]
    for token in _tokens(source):
        if token == "|":
            steps.append([])
        else:
            steps[-1].append(token)
    if any(not step for step in steps):
        raise TemplateError(f"empty step in {{{{ {source} }}}}")
    first = steps[0]
    value: object
    if first[0] in FUNCTIONS:
        value = FUNCTIONS[first[0]](*[_operand(t, ctx) for t in first[1:]])
    elif len(first) == 1:
        value = _operand(first[0], ctx)
    else:
        raise TemplateError(f"unknown function {first[0]!r}")
    for step in steps[1:]:
        name, *args = step
        if name not in FUNCTIONS:
            raise TemplateError(f"unknown function {name!r}")
        value = FUNCTIONS[name](*[_operand(t, ctx) for t in args], value)
    return _text(value)


def render(template: str, ctx: Context) -> str:
    """The template's text for one alert instance."""
    out, pos = [], 0
    for m in _ACTION.finditer(template):
        out.append(template[pos:m.start()])
        out.append(_pipeline(m.group(1), ctx))
        pos = m.end()
    rest = template[pos:]
    if "{{" in rest or "}}" in rest:
        raise TemplateError(f"unbalanced braces in {template[:60]!r}")
    out.append(rest)
    return "".join(out)
