"""Training datasets from reviewed calls: the one implementation behind the feedback
service's export (GET /v1/datasets/export, POST /v1/datasets) and the retrain trigger's
snapshot, so the same reviews and filters give the same bytes and the same hash in both.

- SFT: `{"messages": [...], "completion": ..., "event_id": ...}` for every reviewed call
  with a corrected answer (the correction) or an approval (rating >= 4 or a reviewer's
  thumbs up: the original answer).
- Preference: `{"messages": [...], "chosen": ..., "rejected": ..., "event_id": ...}` for
  every call with a corrected answer that differs from a non-empty original: chosen is the
  correction, rejected the original. (A low rating without a correction has no chosen
  answer, so it yields no pair.)

The review used is the latest reviewer feedback per call whose signature verifies
(lookout.core.review_signing: the feedback service signs what its reviewers submit, so a
row anyone else wrote onto llm.feedback never becomes training data); end-user thumbs say
something is wrong, not what is right, so they are never training data. A call is its
(app_id, event_id): two apps' calls with the same event id never lend each other reviews.
Lines are ordered by event_id, and the content hash is sha256 over both files, so the same
reviews and filters always give the same hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import orjson

from . import review_signing
from .review_signing import ReviewContent
from .session import ClientLike, Session

APPROVED_RATING = 4
FILES = ("sft.jsonl", "preference.jsonl")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DatasetFilters:
    """Which reviewed calls: by app and model, by the call's time [since, until), and by a
    label of the latest review. None: no filter on that field."""

    app_id: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    label: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)


def digest(sft: bytes, preference: bytes) -> str:
    """The content hash of a dataset: its two files' bytes, each behind its name."""
    h = hashlib.sha256()
    for part in (b"sft\n", sft, b"preference\n", preference):
        h.update(part)
    return h.hexdigest()


@dataclass(frozen=True)
class Built:
    sft: bytes
    preference: bytes
    sft_count: int
    preference_count: int
    # Reviewer rows left out because their signature did not verify (forged, or stored
    # before reviews were signed).
    unverified: int = 0

    @property
    def sha256(self) -> str:
        return digest(self.sft, self.preference)

    @property
    def counts(self) -> dict[str, int]:
        return {"sft": self.sft_count, "preference": self.preference_count}


@dataclass(frozen=True)
class Exported:
    """A dataset written to a folder: sft.jsonl, preference.jsonl and manifest.json."""

    folder: Path
    sha256: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def files(self) -> dict[str, str]:
        return {name: str(self.folder / name) for name in FILES}


def content_hash(folder: str | os.PathLike) -> str:
    """The hash of a dataset folder as written by `export` (a missing file counts as empty)."""
    parts = [Path(folder, name) for name in FILES]
    sft, pref = (p.read_bytes() if p.exists() else b"" for p in parts)
    return digest(sft, pref)


def _messages(input_json: str, prompt: str) -> list[dict]:
    msgs = orjson.loads(input_json) if input_json else []
    out = [{"role": m.get("role", "user"), "content": m.get("content") or ""} for m in msgs]
    if not out and prompt:
        out = [{"role": "user", "content": prompt}]
    return out


def _query(filters: DatasetFilters) -> tuple[str, dict]:
    # Filters on the calls go inside their subquery, and only reviewed calls are read, so an
    # export costs the reviewed rows rather than a scan and GROUP BY of every call stored.
    # Every reviewer row of those calls comes back (not just the latest): which one counts
    # is decided after the signatures are checked.
    reviews, params = ["source = 'reviewer'"], {}
    if filters.app_id:
        reviews.append("app_id = {app_id:String}")
        params["app_id"] = filters.app_id
    calls = [*reviews[1:], f"(app_id, event_id) IN (SELECT app_id, event_id FROM feedback WHERE "
                           f"{' AND '.join(reviews)})"]
    if filters.model:
        calls.append("model = {model:String}")
        params["model"] = filters.model
    if filters.since:
        calls.append("ts >= {since:DateTime64(3, 'UTC')}")
        params["since"] = filters.since
    if filters.until:
        calls.append("ts < {until:DateTime64(3, 'UTC')}")
        params["until"] = filters.until
    sql = f"""
        SELECT f.feedback_id, f.event_id, f.app_id, f.source, f.author, f.ts, f.thumbs, f.rating, f.labels,
               f.corrected_output, f.comment, f.signature, c.input, c.prompt, c.output
        FROM (SELECT feedback_id, event_id, app_id, source, author, ts, thumbs, rating, labels, corrected_output,
                     comment, signature
              FROM feedback WHERE {' AND '.join(reviews)}) AS f
        INNER JOIN (SELECT app_id, event_id, any(input) AS input, any(prompt) AS prompt, any(output) AS output
                    FROM llm_calls WHERE {' AND '.join(calls)} GROUP BY app_id, event_id) AS c
            ON c.app_id = f.app_id AND c.event_id = f.event_id
    """
    return sql, params


@dataclass(frozen=True)
class _Review:
    content: ReviewContent
    call: tuple[str, str, str]  # input, prompt, output


def latest_verified(rows, signing_secret: str) -> tuple[list[_Review], int]:
    """Per call, the review that counts: each reviewer's latest row (by ts, then id) among the
    rows whose signature verifies, then the latest of those (by ts, then reviewer), as the
    feedback_latest view would pick were there no forged rows. Also the number of rows left
    out. `rows` are the columns of `_query`; a row stored twice (not yet merged) counts once."""
    seen: set = set()
    per_author: dict[tuple[str, uuid.UUID, str], _Review] = {}
    unverified = 0
    for (fid, event_id, app_id, source, author, ts, thumbs, rating, labels, corrected, comment, signature,
         input_json, prompt, output) in rows:
        if fid in seen:
            continue
        seen.add(fid)
        content = ReviewContent(fid, event_id, app_id, source, author, ts, thumbs, rating, tuple(labels),
                                corrected or "", comment or "")
        if not review_signing.verify(signing_secret, content, signature):
            unverified += 1
            continue
        key = (app_id, event_id, author)
        held = per_author.get(key)
        if held is None or (held.content.ts, str(held.content.feedback_id)) < (ts, str(fid)):
            per_author[key] = _Review(content, (input_json, prompt, output))
    per_call: dict[tuple[str, uuid.UUID], _Review] = {}
    for (app_id, event_id, author), review in per_author.items():
        held = per_call.get((app_id, event_id))
        if held is None or (held.content.ts, held.content.author) < (review.content.ts, author):
            per_call[(app_id, event_id)] = review
    ordered = sorted(per_call.values(), key=lambda r: (str(r.content.event_id), r.content.app_id))
    return ordered, unverified


def build(db: Session | ClientLike, filters: DatasetFilters, signing_secret: str) -> Built:
    """The dataset of the reviews that match `filters` (one query, under the client's
    Session lock; the lines are made after it)."""
    review_signing.check_secret(signing_secret)
    sql, params = _query(filters)
    reviews, unverified = latest_verified(Session.of(db).rows(sql, **params), signing_secret)
    sft, pref = [], []
    for review in reviews:
        r = review.content
        if filters.label and filters.label not in r.labels:
            continue
        input_json, prompt, output = review.call
        event_id = str(r.event_id)
        messages = _messages(input_json, prompt)
        corrected = r.corrected_output
        if corrected:
            sft.append({"messages": messages, "completion": corrected, "event_id": event_id})
            if output and corrected != output:
                pref.append({"messages": messages, "chosen": corrected, "rejected": output, "event_id": event_id})
        elif output and ((r.rating is not None and r.rating >= APPROVED_RATING) or r.thumbs == 1):
            sft.append({"messages": messages, "completion": output, "event_id": event_id})
    return Built(_jsonl(sft), _jsonl(pref), len(sft), len(pref), unverified)


def _jsonl(items: list[dict]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


def _write(path: Path, data: bytes) -> None:
    # Write then rename: a reader (a training job) never sees half a file.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write(built: Built, folder: str | os.PathLike, filters: DatasetFilters) -> Exported:
    """The two JSONL files and a manifest (hash, counts, filters) in `folder`."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / FILES[0], built.sft)
    _write(folder / FILES[1], built.preference)
    exported = Exported(folder, built.sha256, built.counts)
    manifest = {"uri": str(folder), "sha256": exported.sha256, "counts": exported.counts,
                "filters": filters.as_dict(), "unverified_reviews": built.unverified}
    _write(folder / MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return exported


def export(db: Session | ClientLike, filters: DatasetFilters, folder: str | os.PathLike,
           signing_secret: str) -> Exported:
    return write(build(db, filters, signing_secret), folder, filters)
