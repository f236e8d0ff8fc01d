"""Where notifications go, each in its receiver's documented format:

- `webhook`: Lookout's own JSON (below), signed: X-Lookout-Signature is `sha256=<hex>` of
  HMAC-SHA256 under LOOKOUT_ALERT_WEBHOOK_SECRET over `<X-Lookout-Timestamp>.<body>`; a
  receiver checks it in constant time and refuses old timestamps (`verify`). Every attempt
  of one notification carries the same X-Lookout-Notification-Id, so a receiver that
  answered too late can drop the repeat.
- `slack`: an incoming-webhook message (`text` as the notification fallback, `blocks` with
  mrkdwn sections); label values are escaped (& < >) so they cannot form links or mentions.
- `pagerduty`: Events API v2: `trigger` with a payload (summary, source, severity,
  timestamp, component, group, class, custom_details), `acknowledge` and `resolve` with the
  same dedup_key, so PagerDuty keeps one incident per alert instance.

A receiver turns an AlertMessage into a request and reads the answer: sent, try again
later (network errors, timeouts, 408/425/429 and 5xx, with Retry-After when given), or
rejected for good (any other 4xx: a revoked Slack URL, a malformed PagerDuty key), which
is never retried but is logged, counted and listed as failed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol

import httpx
import orjson

from lookout.core.auth import same_secret

Kind = Literal["firing", "resolved", "acknowledged"]
KINDS: tuple[Kind, ...] = ("firing", "resolved", "acknowledged")
SUMMARY_MAX = 1024  # PagerDuty's limit on payload.summary
SLACK_TEXT_MAX = 3000  # Slack's limit on a section's text


@dataclass(frozen=True)
class AlertMessage:
    """An alert instance as it was when the notification was made (stored with it)."""

    kind: Kind
    rule_uid: str
    title: str
    fingerprint: str
    dedup_key: str
    state: str
    labels: dict[str, str]
    summary: str
    runbook: str
    panel: str
    value: float | None
    starts_at: str | None  # ISO 8601, when it fired
    ends_at: str | None  # when it resolved
    episode: str
    app_id: str = ""
    acked_by: str = ""
    ack_comment: str = ""
    url: str = ""  # the overview, at the rule's panel

    def to_json(self) -> str:
        return orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, text: str) -> AlertMessage:
        return cls(**orjson.loads(text))


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Answer:
    outcome: Literal["sent", "retry", "rejected"]
    detail: str
    retry_after_s: float | None = None


class Receiver(Protocol):
    name: str
    kinds: frozenset[str]

    def request(self, message: AlertMessage, notification_id: uuid.UUID, now: datetime) -> Request: ...


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over "<timestamp>.<body>" (the timestamp bounds replays)."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, max_age_s: float = 300,
           now: float | None = None) -> bool:
    """What a webhook receiver checks: the signature, in constant time, and a fresh timestamp."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= max_age_s and same_secret(signature, sign(secret, timestamp, body))


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json(data: object) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


class Webhook:
    name = "webhook"
    kinds: frozenset[str] = frozenset(KINDS)

    def __init__(self, url: str, secret: str):
        self.url, self.secret = url, secret

    def payload(self, message: AlertMessage, notification_id: uuid.UUID, now: datetime) -> dict:
        m = message
        return {
            "version": "1",
            "status": m.kind,
            "notification_id": str(notification_id),
            "sent_at": _iso(now),
            "alert": {
                "rule_uid": m.rule_uid, "title": m.title, "fingerprint": m.fingerprint, "dedup_key": m.dedup_key,
                "state": m.state, "labels": m.labels,
                "annotations": {"summary": m.summary, "runbook": m.runbook, "panel": m.panel},
                "value": m.value, "starts_at": m.starts_at, "ends_at": m.ends_at, "episode": m.episode,
                "acked_by": m.acked_by or None, "ack_comment": m.ack_comment or None, "url": m.url or None,
            },
        }

    def request(self, message: AlertMessage, notification_id: uuid.UUID, now: datetime) -> Request:
        body = _json(self.payload(message, notification_id, now))
        ts = str(int(now.timestamp()))
        return Request(self.url, body, {
            "Content-Type": "application/json", "X-Lookout-Timestamp": ts,
            "X-Lookout-Signature": sign(self.secret, ts, body),
            "X-Lookout-Notification-Id": str(notification_id), "X-Lookout-Event": message.kind,
        })


def slack_escape(text: str) -> str:
    """Slack's three control characters; with them escaped a label value cannot become a link,
    a channel mention or @here."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SLACK_TEXT_MAX]}}


class Slack:
    name = "slack"
    kinds: frozenset[str] = frozenset({"firing", "resolved"})

    def __init__(self, url: str):
        self.url = url

    def payload(self, message: AlertMessage) -> dict:
        m = message
        mark = {"firing": ":rotating_light: FIRING", "resolved": ":white_check_mark: RESOLVED"}.get(
            m.kind, m.kind.upper())
        title = slack_escape(m.title)
        if m.url:
            title = f"<{m.url}|{title}>"
        headline = f"{mark}: *{title}*"
        body = slack_escape(m.summary)
        labels = ", ".join(f"{slack_escape(k)}={slack_escape(v)}" for k, v in sorted(m.labels.items())
                           if k not in ("alertname", "grafana_folder"))
        context = [f"since {m.starts_at}" if m.kind == "firing" and m.starts_at else
                   f"resolved {m.ends_at}" if m.ends_at else "", labels]
        blocks = [_section(f"{headline}\n{body}")]
        if m.kind == "firing" and m.runbook:
            blocks.append(_section(f"*Runbook:* {slack_escape(m.runbook)}"))
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": " · ".join(c for c in context if c)[:SLACK_TEXT_MAX] or m.rule_uid}]})
        fallback = f"{m.kind.upper()}: {slack_escape(m.title)}: {body}"
        return {"text": fallback[:SLACK_TEXT_MAX], "blocks": blocks}

    def request(self, message: AlertMessage, notification_id: uuid.UUID, now: datetime) -> Request:
        return Request(self.url, _json(self.payload(message)), {"Content-Type": "application/json"})


PAGERDUTY_SEVERITY = {"page": "critical", "ticket": "warning", "info": "info"}


class PagerDuty:
    name = "pagerduty"
    kinds: frozenset[str] = frozenset(KINDS)

    def __init__(self, url: str, routing_key: str, source: str = "lookout"):
        self.url, self.routing_key, self.source = url, routing_key, source

    def payload(self, message: AlertMessage, now: datetime) -> dict:
        m = message
        action = {"firing": "trigger", "resolved": "resolve", "acknowledged": "acknowledge"}[m.kind]
        event: dict = {"routing_key": self.routing_key, "event_action": action, "dedup_key": m.dedup_key[:255]}
        if action != "trigger":
            return event  # PagerDuty needs only the key for these
        event["payload"] = {
            "summary": f"{m.title}: {m.summary}"[:SUMMARY_MAX],
            "source": self.source,
            "severity": PAGERDUTY_SEVERITY.get(m.labels.get("severity", ""), "error"),
            "timestamp": m.starts_at or _iso(now),
            "component": m.labels.get("model") or m.labels.get("app_id") or "lookout",
            "group": m.labels.get("app_id") or "lookout",
            "class": m.rule_uid,
            "custom_details": {"labels": m.labels, "value": m.value, "runbook": m.runbook, "rule_uid": m.rule_uid,
                               "fingerprint": m.fingerprint},
        }
        event["client"] = "Lookout"
        if m.url:
            event["client_url"] = m.url
            event["links"] = [{"href": m.url, "text": f"Lookout overview: {m.panel}"}]
        return event

    def request(self, message: AlertMessage, notification_id: uuid.UUID, now: datetime) -> Request:
        return Request(self.url, _json(self.payload(message, now)), {"Content-Type": "application/json"})


def _retry_after(response: httpx.Response, now: datetime) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


def read_answer(response: httpx.Response, now: datetime) -> Answer:
    detail = f"{response.status_code} {response.text[:200].strip()}".strip()
    if 200 <= response.status_code < 300:
        return Answer("sent", detail)
    if response.status_code in (408, 425, 429) or response.status_code >= 500:
        return Answer("retry", detail, _retry_after(response, now))
    return Answer("rejected", detail)


def build(settings) -> dict[str, Receiver]:
    """The receivers the settings configure (AlertSettings)."""
    out: dict[str, Receiver] = {}
    if settings.alert_webhook_url:
        out["webhook"] = Webhook(settings.alert_webhook_url, settings.alert_webhook_secret)
    if settings.alert_slack_webhook_url:
        out["slack"] = Slack(settings.alert_slack_webhook_url)
    if settings.alert_pagerduty_routing_key:
        out["pagerduty"] = PagerDuty(settings.alert_pagerduty_url, settings.alert_pagerduty_routing_key)
    return out
