"""Retrain policies: a versioned YAML file, validated at load with errors that name the
line and the field, so a typo in a policy stops the service at start instead of silently
never firing.

    version: 1
    policies:
      - name: support-quality
        match: {app: support-bot, model: "*"}      # fnmatch globs
        cooldown: 6h
        require_approval: true
        rules:
          - {name: thumbs, kind: thumbs_down_rate, window: 1h, min_samples: 50,
             fire_above: 0.30, clear_below: 0.20}

Rule kinds: thumbs_down_rate, toxicity_share, judge (mean or quantile of a rubric), drift
(sustained for N consecutive windows). `fire_*` trips a rule; `clear_*` (hysteresis,
defaults to the fire threshold) re-arms it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SUPPORTED_VERSIONS = (1,)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from 90, "90s", "15m", "1h", "2d"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30m, 1h or 2d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"invalid duration {value!r}; use a number of seconds or 30s, 15m, 1h, 2d")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RuleBase(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    window: Duration = 3600.0
    min_samples: Annotated[int, Field(ge=1)] = 30

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, v: Any) -> float:
        return parse_duration(v)


class _AboveRule(_RuleBase):
    """A rate that is bad when high: fires above `fire_above`, re-arms below `clear_below`."""

    fire_above: Annotated[float, Field(ge=0, le=1)]
    clear_below: Annotated[float, Field(ge=0, le=1)] | None = None

    @model_validator(mode="after")
    def _hysteresis(self):
        if self.clear_below is not None and self.clear_below > self.fire_above:
            raise ValueError("clear_below must not exceed fire_above (hysteresis re-arms below the fire level)")
        return self

    @property
    def clear_level(self) -> float:
        return self.fire_above if self.clear_below is None else self.clear_below


class ThumbsDownRule(_AboveRule):
    kind: Literal["thumbs_down_rate"]


class ToxicityRule(_AboveRule):
    kind: Literal["toxicity_share"]
    # Every score whose name matches counts; an answer is toxic when any of them is above.
    score: str = "toxicity*"
    value_above: Annotated[float, Field(ge=0, le=1)] = 0.5


class JudgeRule(_RuleBase):
    """A rubric score that is bad when low: fires below `fire_below`, re-arms above `clear_above`."""

    kind: Literal["judge"]
    score: Annotated[str, Field(min_length=1)]
    stat: Literal["mean", "quantile"] = "mean"
    quantile: Annotated[float, Field(gt=0, lt=1)] = 0.1
    fire_below: float
    clear_above: float | None = None

    @model_validator(mode="after")
    def _hysteresis(self):
        if self.clear_above is not None and self.clear_above < self.fire_below:
            raise ValueError("clear_above must not be below fire_below (hysteresis re-arms above the fire level)")
        return self

    @property
    def clear_level(self) -> float:
        return self.fire_below if self.clear_above is None else self.clear_above


class DriftRule(_RuleBase):
    """Fires when `windows` consecutive drift results of a matching signal are drifted;
    re-arms when the latest result of every matching signal is not drifted."""

    kind: Literal["drift"]
    signal: str = "*"
    windows: Annotated[int, Field(ge=1, le=1000)] = 3
    window: Duration = 86400.0
    min_samples: Annotated[int, Field(ge=1)] = 1


Rule = Annotated[ThumbsDownRule | ToxicityRule | JudgeRule | DriftRule, Field(discriminator="kind")]


class Match(_Strict):
    app: str = "*"
    model: str = "*"


class Policy(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    match: Match = Match()
    rules: Annotated[list[Rule], Field(min_length=1)]
    cooldown: Duration = 6 * 3600.0
    # A person approves a run unless the policy says otherwise: a run trains on text that end
    # users and reviewers wrote, so launching one is never the silent default.
    require_approval: bool = True
    dry_run: bool = False
    # Job settings for runs of this policy; the launcher's defaults fill what is absent.
    base_model: str | None = None
    job_args: list[str] = Field(default_factory=list)

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, v: Any) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _unique_rules(self):
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule names must be unique within a policy; repeated: {', '.join(dup)}")
        return self

    def matches(self, app_id: str, model: str) -> bool:
        return fnmatchcase(app_id, self.match.app) and fnmatchcase(model, self.match.model)


class PolicyFile(_Strict):
    version: int
    policies: list[Policy]

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported policy file version {v}; supported: {SUPPORTED_VERSIONS}")
        return v

    @model_validator(mode="after")
    def _unique_policies(self):
        names = [p.name for p in self.policies]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"policy names must be unique; repeated: {', '.join(dup)}")
        return self

    def for_stream(self, app_id: str, model: str) -> list[Policy]:
        return [p for p in self.policies if p.matches(app_id, model)]

    @property
    def max_window(self) -> float:
        return max((r.window for p in self.policies for r in p.rules), default=0.0)


class PolicyError(ValueError):
    """A policy file that cannot be used; `problems` holds (line, field, message) triples."""

    def __init__(self, source: str, problems: list[tuple[int | None, str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}:{line or '?'}: {field or '<file>'}: {msg}" for line, field, msg in problems]
        super().__init__("invalid retrain policy file\n" + "\n".join(lines))


@dataclass(frozen=True)
class _Located:
    line: int | None
    path: str


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_KINDS = frozenset({"thumbs_down_rate", "toxicity_share", "judge", "drift"})


def _locate(root: yaml.Node | None, loc: tuple) -> _Located:
    """The YAML line of the deepest node `loc` reaches: a missing field is reported on the
    line of the mapping that lacks it. Pydantic's discriminator tags are not in the document."""
    kept = tuple(p for p in loc if not (isinstance(p, str) and p in _KINDS))
    node = root
    for part in kept:
        if isinstance(node, yaml.MappingNode):
            hit = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            hit = node.value[part]
        else:
            hit = None
        if hit is None:
            break
        node = hit
    line = node.start_mark.line + 1 if node is not None else None
    return _Located(line, _field_path(kept))


def parse(text: str, source: str = "<policies>") -> PolicyFile:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyError(source, [(mark.line + 1 if mark else None, "", f"not valid YAML: {exc}")]) from exc
    if not isinstance(data, dict):
        raise PolicyError(source, [(1, "", "expected a mapping with `version` and `policies`")])
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _locate(root, tuple(err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "missing":
                msg = f"field {err['loc'][-1]!r} is required"
            elif err["type"] == "extra_forbidden":
                msg = f"unknown field {err['loc'][-1]!r}"
            problems.append((where.line, where.path, msg))
        raise PolicyError(source, problems) from None


def load(path: str | Path | None = None) -> PolicyFile:
    """The policy file at `path`, or the packaged default."""
    if path is None:
        text = resources.files("lookout.retrain_trigger").joinpath("policies.yaml").read_text()
        return parse(text, "policies.yaml (packaged)")
    p = Path(path)
    return parse(p.read_text(), str(p))
