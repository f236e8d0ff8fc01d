"""Dataset export: reviewed calls as JSONL for fine-tuning, versioned by content hash.

- SFT: `{"messages": [...], "completion": ..., "event_id": ...}` for every reviewed call
  with a corrected answer (the correction) or an approval (rating >= 4 or thumbs up, the
  original answer).
- Preference: `{"messages": [...], "chosen": ..., "rejected": ..., "event_id": ...}` for
  every call with a corrected answer that differs from the original: chosen is the
  correction, rejected the original. (A low rating without a correction has no chosen
  answer, so it yields no pair.)

The review used is the latest reviewer feedback per call. Lines are ordered by event_id,
so the same reviews and filters always give the same bytes and the same sha256. The
retrain-trigger imports `export_dataset` from here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from clickhouse_connect.driver.client import Client

APPROVED_RATING = 4


@dataclass(frozen=True)
class DatasetFilters:
    app_id: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    label: str | None = None

    def as_json(self) -> str:
        values = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}
        return json.dumps(values, sort_keys=True)


@dataclass(frozen=True)
class DatasetVersion:
    dataset_id: str
    sha256: str
    created_at: datetime
    filters: DatasetFilters
    sft_count: int
    preference_count: int
    location: str
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Built:
    sft: bytes
    preference: bytes
    sft_count: int
    preference_count: int

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for part in (b"sft\n", self.sft, b"preference\n", self.preference):
            h.update(part)
        return h.hexdigest()


def _messages(input_json: str, prompt: str) -> list[dict]:
    msgs = orjson.loads(input_json) if input_json else []
    out = [{"role": m.get("role", "user"), "content": m.get("content") or ""} for m in msgs]
    if not out and prompt:
        out = [{"role": "user", "content": prompt}]
    return out


def build(client: Client, filters: DatasetFilters) -> Built:
    clauses, params = ["1"], {}
    if filters.app_id:
        clauses.append("c.app_id = {app_id:String}")
        params["app_id"] = filters.app_id
    if filters.model:
        clauses.append("c.model = {model:String}")
        params["model"] = filters.model
    if filters.since:
        clauses.append("c.ts >= {since:DateTime64(3, 'UTC')}")
        params["since"] = filters.since
    if filters.until:
        clauses.append("c.ts < {until:DateTime64(3, 'UTC')}")
        params["until"] = filters.until
    if filters.label:
        clauses.append("has(tupleElement(f.r, 4), {label:String})")
        params["label"] = filters.label
    sql = f"""
        SELECT toString(f.event_id) AS id, c.input, c.prompt, c.output,
               tupleElement(f.r, 1), tupleElement(f.r, 2), tupleElement(f.r, 3)
        FROM (
            SELECT event_id, argMax(tuple(rating, thumbs, corrected_output, labels), (ts, author)) AS r
            FROM feedback_latest WHERE source = 'reviewer' GROUP BY event_id
        ) AS f
        INNER JOIN (SELECT event_id, any(app_id) AS app_id, any(model) AS model, any(ts) AS ts, any(input) AS input,
                           any(prompt) AS prompt, any(output) AS output FROM llm_calls GROUP BY event_id) AS c
            ON c.event_id = f.event_id
        WHERE {' AND '.join(clauses)}
        ORDER BY id
    """
    sft, pref = [], []
    for event_id, input_json, prompt, output, rating, thumbs, corrected in client.query(
        sql, parameters=params
    ).result_rows:
        messages = _messages(input_json, prompt)
        if corrected:
            sft.append({"messages": messages, "completion": corrected, "event_id": event_id})
            if corrected != output:
                pref.append({"messages": messages, "chosen": corrected, "rejected": output, "event_id": event_id})
        elif (rating is not None and rating >= APPROVED_RATING) or thumbs == 1:
            sft.append({"messages": messages, "completion": output, "event_id": event_id})
    return Built(_jsonl(sft), _jsonl(pref), len(sft), len(pref))


def _jsonl(items: list[dict]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


def export_dataset(client: Client, filters: DatasetFilters, out_dir: str | os.PathLike) -> DatasetVersion:
    """Write sft.jsonl and preference.jsonl under out_dir/<dataset_id>/ and record the
    version in dataset_versions. The id is the content hash's prefix, so exporting the
    same reviews again lands in the same folder with the same hash."""
    built = build(client, filters)
    digest = built.sha256
    dataset_id = digest[:16]
    folder = Path(out_dir) / dataset_id
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, data in (("sft.jsonl", built.sft), ("preference.jsonl", built.preference)):
        path = folder / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see half a file
        files[name] = str(path)
    version = DatasetVersion(dataset_id, digest, datetime.now(UTC), filters, built.sft_count,
                             built.preference_count, str(folder), files)
    client.insert(
        "dataset_versions",
        [[dataset_id, digest, version.created_at, filters.as_json(), built.sft_count, built.preference_count,
          str(folder)]],
        column_names=["dataset_id", "sha256", "created_at", "filters", "sft_count", "preference_count", "location"],
    )
    return version
