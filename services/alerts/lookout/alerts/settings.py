"""The evaluator's one settings object. Thresholds and rule knobs are the LOOKOUT_ALERT_*
fields of lookout.dashboards.settings (the same ones Grafana's provisioning is generated from),
inherited here, so one variable sets a threshold for both modes; the fields below say
where notifications go and how hard to try."""

from __future__ import annotations

from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from lookout.core.settings import CommonSettings, ServerSettings
from lookout.dashboards.settings import DashboardSettings

RECEIVERS = ("webhook", "slack", "pagerduty")


def _http_url(value: str, name: str) -> str:
    if not value:
        return value
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{name} must be an http(s) URL with a host, got {value[:80]!r}")
    return value


class AlertSettings(CommonSettings, ServerSettings, DashboardSettings):
    alert_webhook_url: str = Field(
        default="", description="Generic webhook for alert notifications (firing, resolved, acknowledged), "
        "JSON signed with HMAC-SHA256 in X-Lookout-Signature. Empty: none.")
    alert_webhook_secret: str = Field(
        default="", description="HMAC-SHA256 key of the alert webhook's signature (at least 16 characters; "
        "required with LOOKOUT_ALERT_WEBHOOK_URL).")
    alert_slack_webhook_url: str = Field(
        default="", description="Slack incoming-webhook URL for firing and resolved alerts. Empty: none.")
    alert_pagerduty_routing_key: str = Field(
        default="", description="PagerDuty Events API v2 integration (routing) key: alerts trigger, "
        "acknowledge and resolve incidents. Empty: none.")
    alert_pagerduty_url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue", description="PagerDuty Events API v2 endpoint.")
    alert_public_url: str = Field(
        default="", description="Base URL of the overview, for links in notifications (lookout up: its own "
        "address).")
    alert_retry_initial_s: float = Field(
        default=2.0, gt=0, description="First wait before a failed notification is sent again; it doubles per "
        "attempt (with jitter), up to LOOKOUT_ALERT_RETRY_MAX_S.")
    alert_retry_max_s: float = Field(default=300.0, gt=0, description="Longest wait between two attempts.")
    alert_give_up_after_s: float = Field(
        default=86_400.0, gt=0, description="A notification still undelivered this long after it was made is "
        "marked failed (logged, counted, listed at GET /v1/alerts/notifications?status=failed).")
    alert_send_timeout_s: float = Field(default=10.0, gt=0, description="HTTP timeout of one notification attempt.")
    alert_evaluate: bool = Field(
        default=True, description="Evaluate the rules (off: only the API and pending deliveries run, e.g. while "
        "Grafana evaluates and notifies).")

    @field_validator("alert_webhook_url", "alert_slack_webhook_url", "alert_pagerduty_url", "alert_public_url")
    @classmethod
    def _urls(cls, value: str, info) -> str:
        return _http_url(value.strip(), f"LOOKOUT_{info.field_name.upper()}")

    @field_validator("alert_pagerduty_routing_key")
    @classmethod
    def _routing_key(cls, value: str) -> str:
        value = value.strip()
        if value and (len(value) > 64 or not value.isalnum()):
            raise ValueError("LOOKOUT_ALERT_PAGERDUTY_ROUTING_KEY is a PagerDuty integration key: letters and "
                             "digits, at most 64")
        return value

    @model_validator(mode="after")
    def _webhook_is_signed(self) -> AlertSettings:
        if self.alert_webhook_url and len(self.alert_webhook_secret) < 16:
            raise ValueError("LOOKOUT_ALERT_WEBHOOK_URL needs LOOKOUT_ALERT_WEBHOOK_SECRET (at least 16 characters): "
                             "receivers verify the signature")
        if self.alert_retry_max_s < self.alert_retry_initial_s:
            raise ValueError("LOOKOUT_ALERT_RETRY_MAX_S must be at least LOOKOUT_ALERT_RETRY_INITIAL_S")
        return self

    def receivers(self) -> list[str]:
        configured = {"webhook": self.alert_webhook_url, "slack": self.alert_slack_webhook_url,
                      "pagerduty": self.alert_pagerduty_routing_key}
        return [name for name in RECEIVERS if configured[name]]
