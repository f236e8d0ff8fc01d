"""Signatures of reviewer feedback, so only reviews the feedback service accepted become
training data.

Anyone who can write llm.feedback could otherwise add `source: reviewer` rows, and the
datasets (the feedback export and the retrain snapshot) would train on them verbatim. The
feedback service signs each review it produces (after a reviewer's session, CSRF check
and claim won) with HMAC-SHA256 under LOOKOUT_REVIEW_SIGNING_SECRET; the datasets verify
the signature of every reviewer row they read and leave out any that does not verify. A
forged row is still stored (the sink keeps what it is given, and the row is evidence of
the forgery), it just never reaches a dataset.

What is signed is a canonical encoding of the row as ClickHouse stores it: a JSON array of
the fields in a fixed order, the ts in whole milliseconds (DateTime64(3)), absent texts as
"" (the columns are not Nullable), so a row read back verifies exactly when nothing in it
changed. The encoding has a version tag; `v1:` prefixes the hex digest.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from .events import Feedback

VERSION = "v1"
MIN_SECRET_CHARS = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def check_secret(secret: str) -> None:
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(f"LOOKOUT_REVIEW_SIGNING_SECRET must be set to a secret of at least {MIN_SECRET_CHARS} "
                         "characters (the same on every feedback instance and the retrain trigger)")


def to_ms(ts: datetime) -> datetime:
    """`ts` at the millisecond precision storage keeps (sign what will be read back)."""
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class ReviewContent:
    """The signed fields of a feedback row."""

    feedback_id: uuid.UUID
    event_id: uuid.UUID
    app_id: str
    source: str
    author: str
    ts: datetime
    thumbs: int | None
    rating: int | None
    labels: tuple[str, ...]
    corrected_output: str
    comment: str

    @classmethod
    def of(cls, f: Feedback) -> ReviewContent:
        return cls(f.feedback_id, f.event_id, f.app_id, f.source, f.author, f.ts, f.thumbs, f.rating,
                   tuple(f.labels), f.corrected_output or "", f.comment or "")

    def canonical(self) -> bytes:
        ts = self.ts if self.ts.tzinfo else self.ts.replace(tzinfo=UTC)
        ms = (ts - _EPOCH) // timedelta(milliseconds=1)
        return orjson.dumps([
            f"lookout-review/{VERSION}", str(self.feedback_id), str(self.event_id), self.app_id, self.source,
            self.author, ms, self.thumbs, self.rating, list(self.labels), self.corrected_output, self.comment,
        ])


def sign(secret: str, content: ReviewContent) -> str:
    digest = hmac.new(secret.encode(), content.canonical(), hashlib.sha256).hexdigest()
    return f"{VERSION}:{digest}"


def signed(secret: str, f: Feedback) -> Feedback:
    """`f` with its ts cut to milliseconds and its signature set."""
    f = f.model_copy(update={"ts": to_ms(f.ts)})
    return f.model_copy(update={"signature": sign(secret, ReviewContent.of(f))})


def verify(secret: str, content: ReviewContent, signature: str | None) -> bool:
    if not signature or not signature.isascii():
        return False
    return hmac.compare_digest(sign(secret, content), signature)
