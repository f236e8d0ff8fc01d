"""PII in what the feedback service produces: end users' comments, reviewers' notes and
corrected answers (which become training data), and end users' ids.

The same policy as ingest applies (lookout.core.pii, LOOKOUT_PII_MODE / _APP_MODES /
_SECRET): texts are redacted in their app's mode, and a user id becomes the pseudonym
ingest gives the call's user_id, so a vote still joins its author's calls while neither
the id nor an address in a comment reaches Kafka or ClickHouse in clear.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import Counter

from lookout.core.pii import MIN_SECRET_BYTES, PiiPolicy, pseudonymise

from .settings import FeedbackSettings

REDACTED = Counter("lookout_feedback_pii_redactions_total", "PII values redacted in feedback texts")
# events.Feedback's LongText: a hash token is longer than what it replaces, and a text
# over the limit would fail validation where it is read back.
_LONG_TEXT_MAX = 1_000_000


@dataclass(frozen=True)
class Privacy:
    policy: PiiPolicy
    secret: bytes = field(repr=False)

    @classmethod
    def from_settings(cls, s: FeedbackSettings) -> Privacy:
        if len(s.pii_secret) < MIN_SECRET_BYTES:
            raise ValueError(f"LOOKOUT_PII_SECRET must be set to a secret of at least {MIN_SECRET_BYTES} characters "
                             "(the same as ingest's, so vote authors join their calls' user ids)")
        secret = s.pii_secret.encode()
        return cls(PiiPolicy(s.pii_mode, s.pii_app_modes.as_dict(), secret), secret)

    def pseudonym(self, user_id: str) -> str:
        return pseudonymise(user_id, self.secret)

    def redact(self, app_id: str, text: str) -> str:
        """`text` redacted in `app_id`'s mode (CPU work: call it off the event loop)."""
        result = self.policy.for_app(app_id).redact(text)
        if result.counts:
            REDACTED.inc(result.total)
        return result.text[:_LONG_TEXT_MAX]
