"""Each receiver's request on its own: the formats (alert_formats.py), the signature a
webhook receiver verifies, hostile label text kept inert in Slack, how answers are read
(sent, retry with Retry-After, rejected), the back-off, and the rules' summaries rendered
as Grafana renders them."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from alert_formats import check_pagerduty, check_slack, check_webhook
from alert_receivers import ROUTING_KEY, WEBHOOK_SECRET

from lookout.alerts.outbox import Backoff
from lookout.alerts.receivers import AlertMessage, PagerDuty, Slack, Webhook, read_answer, sign, verify
from lookout.alerts.settings import AlertSettings
from lookout.dashboards import alert_templates as tpl
from lookout.dashboards import alerts

NOW = datetime(2026, 4, 1, 8, 30, tzinfo=UTC)


def message(kind="firing", **changes) -> AlertMessage:
    base = dict(kind=kind, rule_uid="lookout-error-rate", title="LLM error rate", fingerprint="0123456789abcdef",
                dedup_key="lookout/lookout-error-rate/0123456789abcdef", state="Alerting",
                labels={"alertname": "LLM error rate", "severity": "page", "app_id": "shop", "model": "m"},
                summary="shop/m: 20% of calls fail.", runbook="Read the errors.", panel="error_rate", value=0.2,
                starts_at=NOW.isoformat(), ends_at=None, episode=str(uuid.uuid4()), app_id="shop",
                url="https://lookout.example.com/#panel=error_rate")
    return AlertMessage(**{**base, **changes})


def test_the_webhook_is_signed_over_its_timestamp_and_body():
    req = Webhook("https://hooks.example.com/x", WEBHOOK_SECRET).request(message(), uuid.uuid4(), NOW)
    headers = {k.lower(): v for k, v in req.headers.items()}
    check_webhook(headers, req.body, orjson.loads(req.body), secret=WEBHOOK_SECRET)
    ts, sig = headers["x-lookout-timestamp"], headers["x-lookout-signature"]
    assert sig == sign(WEBHOOK_SECRET, ts, req.body) and sig.startswith("sha256=")
    assert not verify(WEBHOOK_SECRET, ts, req.body + b" ", sig, now=NOW.timestamp())  # tampered body
    assert not verify(WEBHOOK_SECRET, str(int(ts) - 1), req.body, sig, now=NOW.timestamp())  # moved timestamp
    assert not verify(WEBHOOK_SECRET, ts, req.body, sig, now=NOW.timestamp() + 301)  # replayed later
    assert not verify(WEBHOOK_SECRET, "soon", req.body, sig)


def test_slack_keeps_hostile_text_inert():
    hostile = message(summary="<!channel> click <https://evil.example|here> & win",
                      labels={"alertname": "x", "app_id": "<@U123>", "model": "m>"})
    payload = Slack("https://hooks.slack.com/services/T/B/X").payload(hostile)
    check_slack(payload)
    text = str(payload)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "&amp; win" in text
    assert "<https://lookout.example.com/#panel=error_rate|LLM error rate>" in payload["blocks"][0]["text"]["text"]


def test_slack_text_fits_its_limits():
    payload = Slack("https://hooks.slack.com/x").payload(message(summary="x" * 5000, runbook="y" * 5000))
    check_slack(payload)
    assert len(payload["text"]) <= 3000


def test_pagerduty_events_follow_the_events_api():
    pd = PagerDuty("https://events.pagerduty.com/v2/enqueue", ROUTING_KEY)
    trigger = pd.payload(message(summary="s" * 2000), NOW)
    check_pagerduty(trigger, routing_key=ROUTING_KEY)
    assert len(trigger["payload"]["summary"]) == 1024 and trigger["payload"]["timestamp"] == NOW.isoformat()
    assert trigger["links"] == [{"href": "https://lookout.example.com/#panel=error_rate",
                                 "text": "Lookout overview: error_rate"}]
    for kind, action in (("resolved", "resolve"), ("acknowledged", "acknowledge")):
        event = pd.payload(message(kind), NOW)
        check_pagerduty(event, routing_key=ROUTING_KEY)
        assert event == {"routing_key": ROUTING_KEY, "event_action": action, "dedup_key": trigger["dedup_key"]}
    unknown = pd.payload(message(labels={"alertname": "x"}), NOW)
    assert unknown["payload"]["severity"] == "error" and unknown["payload"]["group"] == "lookout"


@pytest.mark.parametrize(("status", "headers", "outcome", "after"), [
    (200, {}, "sent", None), (202, {}, "sent", None), (204, {}, "sent", None),
    (500, {}, "retry", None), (503, {"Retry-After": "12"}, "retry", 12.0),
    (429, {"Retry-After": "Wed, 01 Apr 2026 08:31:00 GMT"}, "retry", 60.0), (408, {}, "retry", None),
    (400, {}, "rejected", None), (403, {}, "rejected", None), (404, {}, "rejected", None), (410, {}, "rejected", None),
])
def test_answers_are_sent_retried_or_rejected(status, headers, outcome, after):
    answer = read_answer(httpx.Response(status, headers=headers, text="invalid_payload"), NOW)
    assert answer.outcome == outcome and answer.retry_after_s == after
    assert answer.detail.startswith(str(status))


def test_the_back_off_doubles_with_jitter_up_to_its_cap_and_honours_retry_after():
    backoff = Backoff(2, 60, rng=random.Random(7))
    waits = [backoff.delay_s(n) for n in range(1, 9)]
    for n, w in enumerate(waits, start=1):
        cap = min(60, 2 * 2 ** (n - 1))
        assert 0.8 * cap <= w <= cap
    assert backoff.delay_s(1, retry_after_s=30) == 30 and backoff.delay_s(1, retry_after_s=1e9) == 3600


def test_every_rule_summary_renders_as_grafana_would():
    # Every label some rule's series carries (the judge agreement rule's are its rubric's).
    labels = {"app_id": "shop", "model": "gpt-4o-mini", "signal": "embedding",
              "rubric": "relevance", "rubric_version": "1", "evaluator": "gpt-4o"}
    rendered = {r.uid: tpl.render(r.summary, tpl.Context(labels, 0.123456)) for r in alerts.RULES}
    assert rendered["lookout-error-rate"] == "shop/gpt-4o-mini: 12.35% of calls fail."
    assert rendered["lookout-cost-burn"] == "Spend is on course to exceed the daily budget (0.12x)."
    assert rendered["lookout-latency-p99"] == "shop/gpt-4o-mini: p99 latency 0 ms."
    assert rendered["lookout-judge-agreement"] == (
        "shop: the judge's relevance@1 (gpt-4o) agrees with reviewers at kappa 0.12.")
    assert all("{{" not in text and "<no value>" not in text for text in rendered.values()), rendered


def test_the_template_functions_match_prometheus():
    ctx = tpl.Context({"a": "x"}, 1234567.0)
    assert tpl.render("{{ $value | humanize }}", ctx) == "1.235M"
    assert tpl.render("{{ humanize 0.00123 }}", ctx) == "1.23m"
    assert tpl.render("{{ 0.05 | humanizePercentage }}", ctx) == "5%"
    assert tpl.render("{{ 3725 | humanizeDuration }}", ctx) == "1h 2m 5s"
    assert tpl.render("{{ 0.25 | humanizeDuration }}", ctx) == "250ms"
    assert tpl.render('{{ $values.A.Value | printf "%.1f" }} {{ $values.B.Value }}', ctx) == "1234567.0 1"
    assert tpl.render('{{ printf "%d%%" 5 }}', ctx) == "5%"
    assert tpl.render("{{ $labels.a | toUpper }} {{ $labels.missing }}", ctx) == "X <no value>"
    for bad in ("{{ $labels.a | shell }}", "{{ .Env }}", "{{ $values.C.Value }}", "{{ }", "{{ $value | }}"):
        with pytest.raises(tpl.TemplateError):
            tpl.render(bad, ctx)


def test_settings_refuse_a_webhook_without_its_secret_and_bad_urls():
    with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
        AlertSettings(alert_webhook_url="https://hooks.example.com/x")
    with pytest.raises(ValueError, match="http"):
        AlertSettings(alert_slack_webhook_url="file:///etc/passwd")
    with pytest.raises(ValueError, match="ROUTING_KEY"):
        AlertSettings(alert_pagerduty_routing_key="not a key!")
    ok = AlertSettings(alert_webhook_url="https://hooks.example.com/x", alert_webhook_secret="s" * 16,
                       alert_pagerduty_routing_key=ROUTING_KEY)
    assert ok.receivers() == ["webhook", "pagerduty"]


def test_a_duration_is_read_like_grafanas():
    assert alerts.duration_s("5m") == 300 and alerts.duration_s("1h30m") == 5400 and alerts.duration_s("0s") == 0
    for bad in ("", "5", "5 m", "m5", "-5m"):
        with pytest.raises(ValueError):
            alerts.duration_s(bad)
    assert all(r.pending_s >= 0 and r.pending_s % alerts.INTERVAL_S == 0 for r in alerts.RULES)
    assert alerts.INTERVAL_S == 60
    assert NOW + timedelta(seconds=alerts.rule("lookout-cost-burn").pending_s) == NOW + timedelta(minutes=10)
