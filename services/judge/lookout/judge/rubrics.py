"""Rubrics (versioned YAML) and the strict JSON verdict the evaluator LLM must return; the
prompt itself is built in prompt.py."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from lookout.core.events import LlmCall

Need = Literal["context", "reference"]

# The framing every rubric is asked in (prompt.py: the call as fenced JSON data, fields
# cut to a token budget). Bumped when that framing changes, so verdicts given under the
# old one and the new one are different measurements.
PROMPT_VERSION = "2"


class _RubricSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    scale: tuple[int, int]
    instructions: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    needs: list[Need] = Field(default_factory=list)

    @model_validator(mode="after")
    def _scale(self) -> _RubricSpec:
        if self.scale[0] >= self.scale[1]:
            raise ValueError(f"scale must be [low, high] with low < high, got {list(self.scale)}")
        return self


class _RubricFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    rubrics: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")], _RubricSpec]


class RubricError(ValueError):
    pass


@dataclass(frozen=True)
class Rubric:
    name: str
    version: str
    low: int
    high: int
    instructions: str
    needs: tuple[str, ...] = ()

    @property
    def score_name(self) -> str:
        return f"judge.{self.name}"

    @property
    def judged_version(self) -> str:
        """The evaluator_version of this rubric's scores: its own version and the version of
        the prompt framing (prompt.py) it was asked in."""
        return f"{self.version}+p{PROMPT_VERSION}"

    def applies_to(self, call: LlmCall) -> bool:
        if call.status != "ok" or not call.output:
            return False
        return all(bool(getattr(call, need)) for need in self.needs)

    def normalise(self, raw: float) -> float:
        """The verdict on 0..1, so rubrics with different scales share dashboards."""
        return (raw - self.low) / (self.high - self.low)

    def parse(self, content: str) -> Verdict:
        """The verdict in the model's reply; raises InvalidVerdict when it is not exactly
        the JSON object asked for, with the score on this rubric's scale."""
        try:
            verdict = Verdict.model_validate_json(content)
        except ValidationError as exc:
            raise InvalidVerdict(f"not the verdict JSON: {exc.errors()[0]['msg']}") from exc
        if not self.low <= verdict.score <= self.high:
            raise InvalidVerdict(f"score {verdict.score} outside {self.low}..{self.high}")
        return verdict


class Verdict(BaseModel):
    # strict: "4" or 4.5 for a score is a malformed reply, not something to coerce.
    model_config = ConfigDict(extra="forbid", strict=True)
    score: int
    explanation: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class InvalidVerdict(ValueError):
    pass


@dataclass(frozen=True)
class RubricSet:
    version: str
    rubrics: tuple[Rubric, ...]

    @classmethod
    def load(cls, path: str | Path | None = None, only: list[str] | None = None) -> RubricSet:
        if path is None:
            text = resources.files("lookout.judge").joinpath("rubrics.yaml").read_text(encoding="utf-8")
            source = "lookout.judge/rubrics.yaml"
        else:
            source = str(path)
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise RubricError(f"{source}: {exc.strerror}") from exc
        try:
            spec = _RubricFile.model_validate(yaml.safe_load(text))
        except (yaml.YAMLError, ValidationError) as exc:
            raise RubricError(f"{source}: invalid rubrics file: {exc}") from exc
        rubrics = [
            Rubric(name, r.version, r.scale[0], r.scale[1], r.instructions, tuple(r.needs))
            for name, r in spec.rubrics.items()
        ]
        if only:
            unknown = set(only) - {r.name for r in rubrics}
            if unknown:
                raise RubricError(f"{source}: no rubric named {', '.join(sorted(unknown))}")
            rubrics = [r for r in rubrics if r.name in only]
        return cls(spec.version, tuple(rubrics))

    def by_name(self, name: str) -> Rubric:
        for rubric in self.rubrics:
            if rubric.name == name:
                return rubric
        raise KeyError(name)
