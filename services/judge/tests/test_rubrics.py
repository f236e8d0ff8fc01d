"""Rubrics: the versioned YAML file and the strict JSON verdict (the prompt: test_prompt.py)."""

from __future__ import annotations

import pytest
from calls import call

from lookout.judge.rubrics import InvalidVerdict, RubricError, RubricSet


def test_packaged_rubrics_cover_the_standard_criteria():
    rubrics = RubricSet.load()
    names = {r.name for r in rubrics.rubrics}
    assert {"relevance", "coherence", "fluency", "groundedness", "factual_accuracy"} <= names
    assert all(r.version for r in rubrics.rubrics)
    assert rubrics.by_name("groundedness").needs == ("context",)


def test_rubrics_that_need_context_or_reference_apply_only_with_it():
    rubrics = RubricSet.load()
    plain, grounded = call(), call(context=["Paris is in France."], reference="Paris.")
    assert [r.name for r in rubrics.rubrics if r.applies_to(plain)] == ["relevance", "coherence", "fluency"]
    assert {r.name for r in rubrics.rubrics if r.applies_to(grounded)} >= {"groundedness", "factual_accuracy"}
    assert not any(r.applies_to(call(output=None)) for r in rubrics.rubrics)


def test_valid_verdict_parses():
    rubric = RubricSet.load().by_name("relevance")
    verdict = rubric.parse('{"score": 4, "explanation": "Answers the question."}')
    assert (verdict.score, verdict.explanation) == (4, "Answers the question.")
    assert rubric.normalise(verdict.score) == 0.75


@pytest.mark.parametrize("reply", [
    "Score: 4",
    '{"score": "4", "explanation": "x"}',
    '{"score": 4.5, "explanation": "x"}',
    '{"score": 9, "explanation": "x"}',
    '{"score": 4}',
    '{"score": 4, "explanation": "  "}',
    '{"score": 4, "explanation": "x", "confidence": 0.9}',
    '```json\n{"score": 4, "explanation": "x"}\n```',
])
def test_anything_but_the_exact_verdict_is_invalid(reply):
    with pytest.raises(InvalidVerdict):
        RubricSet.load().by_name("relevance").parse(reply)


def test_user_rubrics_file_and_selection(tmp_path):
    path = tmp_path / "rubrics.yaml"
    path.write_text(
        'version: "7"\nrubrics:\n  politeness:\n    version: "2"\n    scale: [0, 10]\n'
        "    instructions: Rate how polite the response is.\n"
        '  brevity:\n    version: "1"\n    scale: [1, 3]\n    instructions: Rate brevity.\n'
    )
    rubrics = RubricSet.load(path, only=["politeness"])
    (politeness,) = rubrics.rubrics
    assert (rubrics.version, politeness.version, politeness.low, politeness.high) == ("7", "2", 0, 10)
    assert politeness.score_name == "judge.politeness"
    with pytest.raises(RubricError, match="no rubric named nope"):
        RubricSet.load(path, only=["nope"])


def test_a_broken_rubrics_file_is_a_clear_error(tmp_path):
    path = tmp_path / "rubrics.yaml"
    path.write_text('version: "1"\nrubrics:\n  x:\n    version: "1"\n    scale: [5, 1]\n    instructions: y\n')
    with pytest.raises(RubricError, match="low < high"):
        RubricSet.load(path)
