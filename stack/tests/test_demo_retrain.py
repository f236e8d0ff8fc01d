"""The demo's retrain policy at a speed: durations divided by the speed, never below the
floor the demo's vote rate needs, everything else as packaged, and valid for the trigger."""

from __future__ import annotations

from lookout.retrain_trigger import policies
from lookout.retrain_trigger.policies import ThumbsDownRule
from lookout.stack import demo
from lookout.stack.demo_retrain import MIN_WINDOW_S, POLICY_FILE, retrain_settings


def thumbs_rule(path) -> tuple[policies.Policy, ThumbsDownRule]:
    (policy,) = policies.load(path).policies
    (rule,) = policy.rules
    assert isinstance(rule, ThumbsDownRule)
    return policy, rule


def test_windows_and_cooldown_scale_with_the_demo_speed(tmp_path):
    real, real_rule = thumbs_rule(retrain_settings(tmp_path, 1.0)["retrain_policies"])
    fast = retrain_settings(tmp_path, 4.0)
    assert fast["retrain_policies"] == str(tmp_path / POLICY_FILE)
    policy, rule = thumbs_rule(fast["retrain_policies"])
    assert rule.window == real_rule.window / 4 == demo.PHASE_SECONDS / 4  # one phase at any speed
    assert policy.cooldown == real.cooldown / 4
    # Cheaper than the real thing in time only: the same evidence is needed, and no one approves.
    assert rule.min_samples == real_rule.min_samples and rule.fire_above == real_rule.fire_above
    assert policy.require_approval is False and policy.match.app == demo.RETRAIN_STREAM[0]
    assert policy.match.model == demo.RETRAIN_STREAM[1] and "--tiny-base-if-missing" in policy.job_args
    assert fast["retrain_launcher"] == "local" and fast["retrain_base_model"].endswith("demo-base-model")


def test_a_window_never_shrinks_below_what_the_vote_rate_fills(tmp_path):
    policy, rule = thumbs_rule(retrain_settings(tmp_path, 1000.0)["retrain_policies"])
    assert rule.window == MIN_WINDOW_S and policy.cooldown == MIN_WINDOW_S
