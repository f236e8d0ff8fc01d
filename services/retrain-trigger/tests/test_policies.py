"""The policy file: the packaged default loads; every mistake names its line and field."""

from __future__ import annotations

import textwrap

import pytest

from lookout.retrain_trigger import policies
from lookout.retrain_trigger.policies import JudgeRule, PolicyError, ThumbsDownRule


def parse(text: str):
    return policies.parse(textwrap.dedent(text), "p.yaml")


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(PolicyError) as info:
        parse(text)
    return info.value.problems


def test_packaged_default_loads_and_covers_every_rule_kind():
    pf = policies.load()
    kinds = {r.kind for p in pf.policies for r in p.rules}
    assert kinds == {"thumbs_down_rate", "toxicity_share", "judge", "drift"}
    assert pf.max_window == 86400.0


def test_durations_hysteresis_defaults_and_matching():
    pf = parse("""
        version: 1
        policies:
          - name: p
            match: {app: "support-*", model: gpt-4o}
            cooldown: 90m
            rules:
              - {name: t, kind: thumbs_down_rate, window: 30m, fire_above: 0.3}
              - {name: j, kind: judge, score: judge.relevance, stat: quantile, quantile: 0.25, fire_below: 0.5,
                 clear_above: 0.6, window: 120}
    """)
    p = pf.policies[0]
    assert p.cooldown == 5400.0
    t, j = p.rules
    assert isinstance(t, ThumbsDownRule) and t.window == 1800.0 and t.clear_level == 0.3
    assert isinstance(j, JudgeRule) and j.window == 120.0 and j.clear_level == 0.6
    assert [x.name for x in pf.for_stream("support-bot", "gpt-4o")] == ["p"]
    assert pf.for_stream("support-bot", "gpt-4o-mini") == []
    assert pf.for_stream("sales", "gpt-4o") == []
    # Left out, approval is required: launching a run on its own needs an explicit false.
    assert p.require_approval is True and p.dry_run is False


def test_errors_name_line_and_field():
    found = problems("""
        version: 1
        policies:
          - name: p
            rules:
              - name: t
                kind: thumbs_down_rate
                window: 1x
                fire_above: 0.3
              - name: j
                kind: judge
                score: judge.relevance
                tresh: 3
    """)
    by_field = {f: (line, msg) for line, f, msg in found}
    assert by_field["policies[0].rules[0].window"][0] == 8
    assert "invalid duration '1x'" in by_field["policies[0].rules[0].window"][1]
    # A missing field is reported on the mapping that lacks it; an unknown one on its own line.
    assert by_field["policies[0].rules[1].fire_below"] == (10, "field 'fire_below' is required")
    assert by_field["policies[0].rules[1].tresh"] == (13, "unknown field 'tresh'")


def test_cross_field_check_is_reported_on_the_rule():
    found = problems("""
        version: 1
        policies:
          - name: p
            rules:
              - name: t
                kind: thumbs_down_rate
                fire_above: 0.3
                clear_below: 0.4
    """)
    assert found == [(6, "policies[0].rules[0]",
                      "clear_below must not exceed fire_above (hysteresis re-arms below the fire level)")]


def test_error_message_is_readable():
    with pytest.raises(PolicyError) as info:
        parse("""
            version: 1
            policies:
              - name: p
                rules:
                  - {name: d, kind: drift, windows: 0}
        """)
    assert "p.yaml:6: policies[0].rules[0].windows: Input should be greater than or equal to 1" in str(info.value)


def test_unknown_kind_version_and_duplicates():
    found = problems("""
        version: 2
        policies:
          - name: p
            rules:
              - {name: a, kind: latency, fire_above: 0.1}
          - name: p
            rules:
              - {name: a, kind: thumbs_down_rate, fire_above: 0.1}
              - {name: a, kind: thumbs_down_rate, fire_above: 0.2}
    """)
    text = [(line, f, msg) for line, f, msg in found]
    assert (2, "version", "unsupported policy file version 2; supported: (1,)") in text
    assert any(line == 6 and f == "policies[0].rules[0]" and "latency" in msg for line, f, msg in text)
    assert any(line == 7 and f == "policies[1]" and "repeated: a" in msg for line, f, msg in text)


def test_yaml_syntax_error_has_a_line():
    found = problems("""
        version: 1
        policies:
          - name: p
            rules: [ {name: a
    """)
    assert found[0][0] is not None and "not valid YAML" in found[0][2]


def test_load_from_a_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("version: 1\npolicies: []\n")
    assert policies.load(path).policies == []
    path.write_text("- 1\n")
    with pytest.raises(PolicyError, match=r"mine.yaml:1: <file>: expected a mapping"):
        policies.load(path)


def test_check_policies_command(tmp_path, capsys):
    from lookout.retrain_trigger.__main__ import main

    assert main(["--check-policies"]) == 0
    assert capsys.readouterr().out.startswith("ok: 1 policies, 4 rules")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\npolicies:\n  - name: p\n    rules: []\n")
    assert main(["--check-policies", str(bad)]) == 2
    assert f"{bad}:4: policies[0].rules: List should have at least 1 item" in capsys.readouterr().err
