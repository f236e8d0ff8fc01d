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

The review used is the latest reviewer feedback per call; end-user thumbs say something is
wrong, not what is right, so they are never training data. Lines are ordered by event_id,
and the content hash is sha256 over both files, so the same reviews and filters always give
the same hash.
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
from clickhouse_connect.driver.client import Client

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
    calls, params = ["event_id IN (SELECT event_id FROM feedback WHERE source = 'reviewer')"], {}
    if filters.app_id:
        calls.append("app_id = {app_id:String}")
        params["app_id"] = filters.app_id
    if filters.model:
        calls.append("model = {model:String}")
        params["model"] = filters.model
    if filters.since:
        calls.append("ts >= {since:DateTime64(3, 'UTC')}")
        params["since"] = filters.since
    if filters.until:
        calls.append("ts < {until:DateTime64(3, 'UTC')}")
        params["until"] = filters.until
    label = "1"
    if filters.label:
        label = "has(tupleElement(f.r, 4), {label:String})"
        params["label"] = filters.label
    sql = f"""
        SELECT toString(f.event_id) AS id, c.input, c.prompt, c.output,
               tupleElement(f.r, 1), tupleElement(f.r, 2), tupleElement(f.r, 3)
        FROM (
            SELECT event_id, argMax(tuple(rating, thumbs, corrected_output, labels), (ts, author)) AS r
            FROM feedback_latest WHERE source = 'reviewer' GROUP BY event_id
        ) AS f
        INNER JOIN (SELECT event_id, any(input) AS input, any(prompt) AS prompt, any(output) AS output
                    FROM llm_calls WHERE {' AND '.join(calls)} GROUP BY event_id) AS c
            ON c.event_id = f.event_id
        WHERE {label}
        ORDER BY id
    """
    return sql, params


def build(client: Client, filters: DatasetFilters) -> Built:
    sql, params = _query(filters)
    sft, pref = [], []
    for event_id, input_json, prompt, output, rating, thumbs, corrected in client.query(
        sql, parameters=params
    ).result_rows:
        messages = _messages(input_json, prompt)
        if corrected:
            sft.append({"messages": messages, "completion": corrected, "event_id": event_id})
            if output and corrected != output:
                pref.append({"messages": messages, "chosen": corrected, "rejected": output, "event_id": event_id})
        elif output and ((rating is not None and rating >= APPROVED_RATING) or thumbs == 1):
            sft.append({"messages": messages, "completion": output, "event_id": event_id})
    return Built(_jsonl(sft), _jsonl(pref), len(sft), len(pref))


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
                "filters": filters.as_dict()}
    _write(folder / MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return exported


def export(client: Client, filters: DatasetFilters, folder: str | os.PathLike) -> Exported:
    return write(build(client, filters), folder, filters)
