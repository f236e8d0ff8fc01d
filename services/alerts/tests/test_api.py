"""The alerts API over a real evaluator on chdb: silences hold notifications back and
release them when they end, an acknowledgement is recorded and reaches PagerDuty, keys see
and act on their own apps only, and every error is the one envelope."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alert_formats import check_pagerduty, check_webhook
from alert_receivers import ROUTING_KEY, T0, WEBHOOK_SECRET
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from lookout.alerts.engine import State
from lookout.core.api_errors import install_error_handlers
from lookout.core.auth import ApiKeyStore
from lookout.dashboards import alerts
from lookout.testing import sample
from lookout.testing.envelope import assert_error_envelopes

RULE = alerts.rule("lookout-error-rate")


def minute(k: int):
    return T0 + timedelta(minutes=k)


def seed_two_failing_apps(ch) -> None:
    """support-bot and search both fail 2 calls in 10, from 10 minutes before T0 on."""
    calls = []
    for k in range(-10, 20):
        for i in range(10):
            ts = minute(k) + timedelta(seconds=6 * i)
            for app in ("support-bot", "search"):
                calls.append(sample.call(ts, app, "gpt-4o-mini", status="error" if i < 2 else "ok"))
    sample.insert_calls(ch, calls)


class Keys:
    def __init__(self, ch):
        store = ApiKeyStore(ch)
        _, self.admin = store.create("*", ["read", "admin"], name="on-call")
        _, self.reader = store.create("*", ["read"], name="viewer")
        _, self.bot_admin = store.create("support-bot", ["read", "admin"], name="bot team")
        _, self.ingest = store.create("*", ["ingest"], name="sdk")


@pytest.fixture
def keys(ch) -> Keys:
    return Keys(ch)


@pytest.fixture
def app(evaluator) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    for router in evaluator.routers():
        app.include_router(router)
    return app


def http(app: FastAPI, key: str | None = None) -> AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://alerts", headers=headers)


async def fire(evaluator, upto: int = 5) -> None:
    for k in range(upto + 1):
        await evaluator.evaluate_rule(RULE, minute(k))


def fingerprint_of(evaluator, app_id: str) -> str:
    (inst,) = [i for i in evaluator.instances[RULE.uid].values() if i.labels.get("app_id") == app_id]
    return inst.fingerprint


async def test_a_silence_holds_back_its_instances_notifications_until_it_is_expired(ch, evaluator, app, keys,
                                                                                   webhook, pagerduty, clock):
    seed_two_failing_apps(ch)
    clock.set(minute(0))
    async with http(app, keys.admin) as c:
        r = await c.post("/v1/alerts/silences", json={
            "rule_uid": RULE.uid, "matchers": {"app_id": "support-bot"}, "duration_s": 3600,
            "comment": "known provider outage, ticket OPS-12"})
        assert r.status_code == 201, r.text
        silence = r.json()["silence"]
        assert silence["active"] and silence["created_by"].endswith("(on-call)")
        await fire(evaluator)
        await evaluator.outbox.deliver_due(minute(5))
        # search pages; the silenced support-bot does not, and the history says why.
        assert {r.json["alert"]["labels"]["app_id"] for r in webhook.delivered} == {"search"}
        history = (await c.get("/v1/alerts/history", params={"fingerprint": fingerprint_of(evaluator, "support-bot")}
                               )).json()["history"]
        (held,) = [h for h in history if h["event"] == "silenced"]
        assert silence["silence_id"] in held["reason"] and held["to_state"] == "Alerting"
        listed = (await c.get("/v1/alerts/silences")).json()["silences"]
        assert [s["silence_id"] for s in listed] == [silence["silence_id"]]
        # Ending it early sends what it held back, at once, since the alert still fires.
        clock.set(minute(6))
        r = await c.delete(f"/v1/alerts/silences/{silence['silence_id']}")
        assert r.status_code == 200 and not r.json()["silence"]["active"]
        await evaluator.outbox.deliver_due(minute(6))
        assert sorted(r.json["alert"]["labels"]["app_id"] for r in webhook.delivered) == ["search", "support-bot"]
        assert (await c.get("/v1/alerts/silences")).json()["silences"] == []
        ended = (await c.get("/v1/alerts/silences", params={"include_ended": "true"})).json()["silences"]
        assert len(ended) == 1 and not ended[0]["active"]
    assert len(pagerduty.delivered) == 2


async def test_an_instance_silenced_for_its_whole_episode_is_never_notified_at_all(ch, evaluator, app, keys,
                                                                                  webhook, clock):
    seed_two_failing_apps(ch)
    async with http(app, keys.admin) as c:
        r = await c.post("/v1/alerts/silences", json={"rule_uid": RULE.uid, "ends_at": minute(60).isoformat(),
                                                      "comment": "maintenance"})
        assert r.status_code == 201
    await fire(evaluator)
    ch.command("TRUNCATE TABLE llm_calls")
    ch.command("TRUNCATE TABLE calls_1m")
    for k in (6, 7):
        await evaluator.evaluate_rule(RULE, minute(k))  # missing twice: resolved
    await evaluator.outbox.deliver_due(minute(7))
    assert webhook.requests == [] and not evaluator.instances[RULE.uid]


async def test_an_acknowledgement_is_recorded_and_acknowledges_the_pagerduty_incident(ch, evaluator, app, keys,
                                                                                     webhook, pagerduty, clock):
    seed_two_failing_apps(ch)
    await fire(evaluator)
    await evaluator.outbox.deliver_due(minute(5))
    fp = fingerprint_of(evaluator, "support-bot")
    clock.set(minute(5) + timedelta(seconds=40))
    async with http(app, keys.admin) as c:
        r = await c.post(f"/v1/alerts/{fp}/ack", json={"comment": "rolling back the prompt"})
        assert r.status_code == 200, r.text
        acked = r.json()["alert"]
        assert acked["acked_by"].endswith("(on-call)") and acked["ack_comment"] == "rolling back the prompt"
        active = {a["fingerprint"]: a for a in (await c.get("/v1/alerts")).json()["alerts"]}
        assert active[fp]["acked_by"] == acked["acked_by"] and active[fp]["state"] == "Alerting"
        history = (await c.get("/v1/alerts/history", params={"fingerprint": fp})).json()["history"]
        assert history[0]["event"] == "ack" and history[0]["actor"] == acked["acked_by"]
    await evaluator.outbox.deliver_due(clock.now())
    trigger = next(r.json for r in pagerduty.delivered if r.json["event_action"] == "trigger"
                   and r.json["payload"]["group"] == "support-bot")
    ack = pagerduty.delivered[-1].json
    check_pagerduty(ack, routing_key=ROUTING_KEY)
    assert ack == {"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": trigger["dedup_key"]}
    hook = webhook.delivered[-1]
    check_webhook(hook.headers, hook.body, hook.json, secret=WEBHOOK_SECRET)
    assert hook.json["status"] == "acknowledged" and hook.json["alert"]["ack_comment"] == "rolling back the prompt"
    # Stored: a restart still shows who is on it.
    (row,) = ch.query("SELECT acked_by, ack_comment FROM alert_instances FINAL WHERE fingerprint = {fp:String}",
                      parameters={"fp": fp}).result_rows
    assert row == (acked["acked_by"], "rolling back the prompt")
    # Nothing fires with that fingerprint once it resolved.
    ch.command("TRUNCATE TABLE calls_1m")
    for k in (6, 7):
        await evaluator.evaluate_rule(RULE, minute(k))
    async with http(app, keys.admin) as c:
        r = await c.post(f"/v1/alerts/{fp}/ack", json={})
        assert r.status_code == 404 and r.json()["error"]["field"] == "fingerprint"


async def test_an_app_bound_key_sees_and_acts_on_its_own_app_only(ch, evaluator, app, keys):
    seed_two_failing_apps(ch)
    await fire(evaluator)
    # A cost burn, which belongs to no app, fires too.
    sample.insert_calls(ch, [sample.call(minute(5) - timedelta(seconds=30 * i), "search", "gpt-4o", cost_usd=1.0)
                             for i in range(100)])
    await evaluator.evaluate_rule(alerts.rule("lookout-cost-burn"), minute(5))
    async with http(app, keys.bot_admin) as mine, http(app, keys.admin) as every:
        everything = (await every.get("/v1/alerts")).json()["alerts"]
        assert {a["app_id"] for a in everything} == {"support-bot", "search", None}
        own = (await mine.get("/v1/alerts")).json()["alerts"]
        assert {a["app_id"] for a in own} == {"support-bot"}
        history = (await mine.get("/v1/alerts/history")).json()["history"]
        assert history and {h["app_id"] for h in history} == {"support-bot"}
        other = fingerprint_of(evaluator, "search")
        r = await mine.post(f"/v1/alerts/{other}/ack", json={})
        assert r.status_code == 404  # another app's instance reads as missing
        assert (await mine.post(f"/v1/alerts/{fingerprint_of(evaluator, 'support-bot')}/ack", json={})).status_code \
            == 200
        # Its silences must name its app, on a rule kept per app.
        body = {"rule_uid": RULE.uid, "duration_s": 600, "comment": "c"}
        r = await mine.post("/v1/alerts/silences", json=body)
        assert r.status_code == 403 and r.json()["error"]["field"] == "matchers"
        r = await mine.post("/v1/alerts/silences", json={**body, "rule_uid": "lookout-cost-burn",
                                                         "matchers": {"app_id": "support-bot"}})
        assert r.status_code == 403 and r.json()["error"]["field"] == "rule_uid"
        r = await mine.post("/v1/alerts/silences", json={**body, "matchers": {"app_id": "support-bot"}})
        assert r.status_code == 201
        theirs = await every.post("/v1/alerts/silences", json={**body, "matchers": {"app_id": "search"}})
        assert [s["matchers"] for s in (await mine.get("/v1/alerts/silences")).json()["silences"]] == [
            {"app_id": "support-bot"}]
        r = await mine.delete(f"/v1/alerts/silences/{theirs.json()['silence']['silence_id']}")
        assert r.status_code == 404


async def test_reading_needs_the_read_scope_and_changing_needs_admin(evaluator, app, keys):
    async with http(app) as anonymous:
        r = await anonymous.get("/v1/alerts")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    async with http(app, keys.ingest) as sdk:
        assert (await sdk.get("/v1/alerts")).status_code == 403
    async with http(app, keys.reader) as viewer:
        assert (await viewer.get("/v1/alerts")).status_code == 200
        rules = (await viewer.get("/v1/alerts/rules")).json()
        assert [r["uid"] for r in rules["rules"]] == [r.uid for r in alerts.RULES]
        error_rate = next(r for r in rules["rules"] if r["uid"] == RULE.uid)
        assert error_rate["threshold"] == 0.05 and error_rate["threshold_setting"] == "LOOKOUT_ALERT_ERROR_RATE"
        assert rules["receivers"] == ["pagerduty", "slack", "webhook"]
        r = await viewer.post("/v1/alerts/silences", json={"rule_uid": RULE.uid, "duration_s": 600, "comment": "c"})
        assert r.status_code == 403 and "'admin' scope" in r.json()["error"]["message"]
        assert (await viewer.get("/v1/alerts/notifications")).status_code == 403


@pytest.mark.parametrize(("body", "field"), [
    ({"rule_uid": "nope", "duration_s": 600, "comment": "c"}, "rule_uid"),
    ({"rule_uid": RULE.uid, "comment": "c"}, None),  # neither an end nor a duration
    ({"rule_uid": RULE.uid, "duration_s": 600, "ends_at": "2030-01-01T00:00:00Z", "comment": "c"}, None),
    ({"rule_uid": RULE.uid, "duration_s": 10, "comment": "c"}, "duration_s"),
    ({"rule_uid": RULE.uid, "duration_s": 600}, "comment"),
    ({"rule_uid": RULE.uid, "ends_at": "2020-01-01T00:00:00Z", "comment": "c"}, "ends_at"),
    ({"rule_uid": RULE.uid, "ends_at": "2030-01-01T00:00:00", "comment": "c"}, "ends_at"),  # no zone
    ({"rule_uid": RULE.uid, "duration_s": 600, "comment": "c", "matchers": {"1bad": "x"}}, "matchers"),
    ({"rule_uid": RULE.uid, "duration_s": 600, "comment": "c", "matchers": {f"l{i}": "x" for i in range(11)}},
     "matchers"),
    ({"rule_uid": RULE.uid, "duration_s": 600, "comment": "c", "extra": 1}, "extra"),
])
async def test_a_bad_silence_is_a_422_naming_the_field(evaluator, app, keys, body, field):
    async with http(app, keys.admin) as c:
        r = await c.post("/v1/alerts/silences", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"].get("field") == field, r.json()


async def test_notifications_show_where_delivery_stands(ch, evaluator, app, keys, webhook):
    webhook.fail_times = 5
    seed_two_failing_apps(ch)
    await fire(evaluator)
    await evaluator.outbox.deliver_due(minute(5))
    async with http(app, keys.admin) as c:
        pending = (await c.get("/v1/alerts/notifications", params={"status": "pending"})).json()["notifications"]
        assert {n["receiver"] for n in pending} == {"webhook"} and all(n["attempts"] == 1 for n in pending)
        assert all(n["last_error"].startswith("503") and n["next_attempt_at"] for n in pending)
        sent = (await c.get("/v1/alerts/notifications", params={"status": "sent"})).json()["notifications"]
        assert {n["receiver"] for n in sent} == {"slack", "pagerduty"}
        r = await c.get("/v1/alerts/notifications", params={"status": "lost"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "status"


def test_every_error_is_the_envelope(ch, evaluator, app, keys):
    assert_error_envelopes(app, strong_key=keys.admin, weak_key=keys.ingest)


async def test_the_state_counts_follow_the_instances(ch, evaluator):
    seed_two_failing_apps(ch)
    await fire(evaluator, upto=2)
    assert evaluator.state_counts()[str(State.PENDING)] == 2
