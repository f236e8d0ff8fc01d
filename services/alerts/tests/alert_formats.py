"""Each receiver's documented request format, as checks a test runs on what it was sent.

- PagerDuty Events API v2, "Send an alert event" (developer.pagerduty.com, events-api-v2
  overview): POST /v2/enqueue with routing_key (the integration key, 32 characters),
  event_action trigger|acknowledge|resolve, dedup_key (at most 255 characters; required to
  acknowledge or resolve), and for a trigger a payload with summary (at most 1024
  characters), source and severity (critical|error|warning|info) required, timestamp (ISO
  8601), component, group, class and custom_details (an object) optional; links [{href,
  text}], images, client and client_url optional. Nothing else at the top level.
- Slack incoming webhooks (api.slack.com/messaging/webhooks, Block Kit): a JSON object
  with `text` (the notification fallback) and optional `blocks`; a section block's text is
  a text object {type: mrkdwn|plain_text, text} of at most 3000 characters; a context
  block has 1 to 10 elements (text objects). In mrkdwn, & < > are control characters
  (links <url|text>, mentions), written &amp; &lt; &gt; otherwise.
- Lookout's webhook (services/alerts receivers.py): version "1", status, notification_id,
  sent_at, alert {rule_uid, title, fingerprint, dedup_key, state, labels, annotations
  {summary, runbook, panel}, value, starts_at, ends_at, episode, acked_by, ack_comment,
  url}, signed in X-Lookout-Signature over X-Lookout-Timestamp "." body.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from lookout.alerts.receivers import verify

PD_TOP = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client", "client_url"}
PD_PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}


def check_pagerduty(event: dict, *, routing_key: str) -> None:
    assert set(event) <= PD_TOP, set(event) - PD_TOP
    assert event["routing_key"] == routing_key and len(routing_key) == 32
    assert event["event_action"] in ("trigger", "acknowledge", "resolve")
    assert isinstance(event["dedup_key"], str) and 0 < len(event["dedup_key"]) <= 255
    if event["event_action"] != "trigger":
        return
    p = event["payload"]
    assert set(p) <= PD_PAYLOAD, set(p) - PD_PAYLOAD
    assert isinstance(p["summary"], str) and 0 < len(p["summary"]) <= 1024
    assert isinstance(p["source"], str) and p["source"]
    assert p["severity"] in PD_SEVERITIES
    datetime.fromisoformat(p["timestamp"])
    assert isinstance(p.get("custom_details", {}), dict)
    for link in event.get("links", []):
        assert set(link) <= {"href", "text"} and link["href"].startswith(("http://", "https://"))
    if "client_url" in event:
        assert event["client_url"].startswith(("http://", "https://"))


_MRKDWN_CONTROL = re.compile(r"<(?!(?:https?://[^|>]+\|[^<>]*)>)")


def check_slack(message: dict) -> None:
    assert isinstance(message["text"], str) and message["text"]
    assert set(message) <= {"text", "blocks", "attachments", "thread_ts", "mrkdwn"}
    for block in message.get("blocks", []):
        assert block["type"] in ("section", "context", "divider", "header"), block
        if block["type"] == "section":
            text = block["text"]
            assert text["type"] in ("mrkdwn", "plain_text") and 0 < len(text["text"]) <= 3000
            if text["type"] == "mrkdwn":
                # Only our own <url|text> links: a label value cannot open one.
                assert not _MRKDWN_CONTROL.search(text["text"]), text["text"]
        elif block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                assert element["type"] in ("mrkdwn", "plain_text", "image")
                assert not _MRKDWN_CONTROL.search(element.get("text", "")), element


WEBHOOK_ALERT = {"rule_uid", "title", "fingerprint", "dedup_key", "state", "labels", "annotations", "value",
                 "starts_at", "ends_at", "episode", "acked_by", "ack_comment", "url"}


def check_webhook(headers: dict[str, str], body: bytes, payload: dict, *, secret: str) -> None:
    assert headers["content-type"] == "application/json"
    assert verify(secret, headers["x-lookout-timestamp"], body, headers["x-lookout-signature"],
                  now=float(headers["x-lookout-timestamp"]))
    assert not verify("another-secret-0123456789", headers["x-lookout-timestamp"], body,
                      headers["x-lookout-signature"], now=float(headers["x-lookout-timestamp"]))
    assert set(payload) == {"version", "status", "notification_id", "sent_at", "alert"}
    assert payload["version"] == "1" and payload["status"] in ("firing", "resolved", "acknowledged")
    assert headers["x-lookout-event"] == payload["status"]
    assert str(uuid.UUID(payload["notification_id"])) == headers["x-lookout-notification-id"]
    datetime.fromisoformat(payload["sent_at"])
    assert set(payload["alert"]) == WEBHOOK_ALERT
    assert set(payload["alert"]["annotations"]) == {"summary", "runbook", "panel"}
