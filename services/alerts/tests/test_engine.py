"""The state machine on its own (no store, no clock): Grafana's transitions for the rules
of lookout.dashboards.alerts, evaluation by evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lookout.alerts import engine
from lookout.alerts.engine import Failed, Rows, State
from lookout.dashboards import alerts
from lookout.dashboards.alerts import Series

T = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ERRORS = alerts.rule("lookout-error-rate")  # for 5m
DRIFT = alerts.rule("lookout-sustained-drift")  # for 0s


def at(minutes: int) -> datetime:
    return T + timedelta(minutes=minutes)


def rows(*values: tuple[str, float | None, bool]) -> Rows:
    return Rows([Series({"app_id": app, "model": "m"}, v, hit) for app, v, hit in values])


def run(rule, results: list[engine.Result]) -> tuple[list[dict[str, State]], list[engine.Transition]]:
    known: dict[str, engine.Instance] = {}
    states, transitions = [], []
    for k, result in enumerate(results):
        out = engine.step(rule, known, result, at(k))
        known = out.instances
        states.append({i.labels.get("app_id", i.labels["alertname"]): i.state for i in known.values()})
        transitions += out.transitions
    return states, transitions


def test_pending_lasts_the_rules_for_then_alerting():
    hot = rows(("a", 0.2, True))
    states, transitions = run(ERRORS, [hot] * 7)
    assert [s.get("a") for s in states] == [State.PENDING] * 5 + [State.ALERTING] * 2
    assert [(t.from_state, t.to_state, t.at) for t in transitions] == [
        (State.NORMAL, State.PENDING, at(0)), (State.PENDING, State.ALERTING, at(5))]
    assert transitions[1].fired and not transitions[0].fired


def test_a_rule_without_for_fires_on_its_first_breach():
    series = Rows([Series({"app_id": "a", "model": "m", "signal": "embedding"}, 3.0, True)])
    states, transitions = run(DRIFT, [series])
    assert states == [{"a": State.ALERTING}] and transitions[0].fired


def test_pending_that_recovers_goes_back_to_normal_and_is_no_resolve():
    states, transitions = run(ERRORS, [rows(("a", 0.2, True))] * 2 + [rows(("a", 0.01, False))])
    assert states[-1] == {}
    assert not any(t.resolved or t.fired for t in transitions)


def test_alerting_that_recovers_resolves():
    states, transitions = run(ERRORS, [rows(("a", 0.2, True))] * 6 + [rows(("a", 0.0, False))])
    assert states[-1] == {} and transitions[-1].resolved
    assert transitions[-1].instance.resolved_at == at(6) and transitions[-1].reason == "recovered"


def test_a_missing_series_keeps_its_state_once_and_resolves_on_the_second_missing_evaluation():
    other = rows(("b", 0.0, False))
    states, transitions = run(ERRORS, [rows(("a", 0.2, True))] * 6 + [other, other])
    assert states[-2] == {"a": State.ALERTING} and states[-1] == {}
    assert transitions[-1].resolved and transitions[-1].reason.startswith("MissingSeries")


def test_no_rows_at_all_is_ok_and_counts_as_missing():
    states, _ = run(ERRORS, [rows(("a", 0.2, True))] * 6 + [Rows([]), rows(("a", 0.2, True))])
    assert states[-2] == {"a": State.ALERTING} and states[-1] == {"a": State.ALERTING}  # back before resolving


def test_a_failed_query_is_an_error_at_once_and_leaves_the_series_alone():
    hot = rows(("a", 0.2, True))
    states, transitions = run(ERRORS, [hot] * 2 + [Failed("OperationalError: down")] * 3 + [hot])
    error = [t for t in transitions if t.to_state == State.ERROR]
    assert len(error) == 1 and error[0].at == at(2) and error[0].fired
    assert states[2] == {"a": State.PENDING, engine.ERROR_ALERTNAME: State.ERROR}
    # The series' for kept running through the failure: 5 minutes after minute 0 it fires.
    assert states[5] == {"a": State.ALERTING}
    assert [t.to_state for t in transitions if t.instance.labels["alertname"] == engine.ERROR_ALERTNAME] == [
        State.ERROR, State.NORMAL]
    assert error[0].instance.labels["rulename"] == ERRORS.title and error[0].instance.app_id == ""


def test_instances_are_per_label_set_and_their_fingerprints_are_stable():
    out = engine.step(ERRORS, {}, rows(("a", 0.2, True), ("b", 0.3, True), ("c", None, False)), T)
    assert {i.labels["app_id"] for i in out.instances.values()} == {"a", "b"}
    labels = {"alertname": "LLM error rate", "grafana_folder": "Lookout", "team": "lookout", "severity": "page",
              "app_id": "a", "model": "m"}
    fp = engine.fingerprint(ERRORS.uid, labels)
    assert fp in out.instances and out.instances[fp].app_id == "a"
    assert engine.fingerprint(ERRORS.uid, dict(reversed(labels.items()))) == fp
    assert out.instances[fp].dedup_key == f"lookout/lookout-error-rate/{fp}"
    assert out.instances[fp].summary == "a/m: 20% of calls fail."


def test_a_rule_without_an_app_label_gives_instances_of_no_app():
    cost = alerts.rule("lookout-cost-burn")
    out = engine.step(cost, {}, Rows([Series({}, 2.0, True)]), T)
    (inst,) = out.instances.values()
    assert inst.app_id == "" and inst.summary == "Spend is on course to exceed the daily budget (2.00x)."


def test_a_new_episode_forgets_the_last_ones_acknowledgement_and_receivers():
    hot, cool = rows(("a", 0.2, True)), rows(("a", 0.0, False))
    known: dict[str, engine.Instance] = {}
    for k, result in enumerate([hot] * 6):
        known = engine.step(ERRORS, known, result, at(k)).instances
    (inst,) = known.values()
    known = {inst.fingerprint: engine.with_ack(inst, "key k1", "looking", at(6))}
    known[inst.fingerprint].notified = ("webhook",)
    known = engine.step(ERRORS, known, cool, at(7)).instances
    again = engine.step(ERRORS, known, hot, at(8)).instances
    (new,) = again.values()
    assert new.acked_by == "" and new.notified == () and new.episode != inst.episode
