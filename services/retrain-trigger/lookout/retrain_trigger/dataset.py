"""Training data snapshots from reviewed feedback.

`DatasetSource` is the seam: the feedback service's `lookout.feedback.datasets.export_dataset`
writes the same JSONL, and the two should converge on one implementation; until then
`ClickHouseSnapshot` reads the stored feedback and calls directly.

- SFT line: {"messages": [...], "completion": "...", "event_id": "..."}: a reviewer's
  corrected output, or the original output when a reviewer rated it 4 or 5.
- Preference line: {"messages": [...], "chosen": corrected, "rejected": original, "event_id"}.

The latest review of a call wins. Lines are ordered by event id, so the same feedback gives
the same bytes, and the sha256 over the files names the snapshot's content.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import orjson
from clickhouse_connect.driver.client import Client

FILES = ("sft.jsonl", "preference.jsonl")


@dataclass(frozen=True)
class DatasetFilters:
    app_id: str
    model: str
    since: datetime | None = None
    min_rating: int = 4


@dataclass(frozen=True)
class DatasetVersion:
    uri: str  # the snapshot folder
    sha256: str
    counts: dict[str, int] = field(default_factory=dict)


class DatasetSource(Protocol):
    def snapshot(self, filters: DatasetFilters, out_dir: Path) -> DatasetVersion: ...


def _messages(input_json: str, prompt: str) -> list[dict]:
    if input_json:
        return [{"role": m.get("role", "user"), "content": m.get("content") or ""} for m in orjson.loads(input_json)]
    return [{"role": "user", "content": prompt}]


def content_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for name in FILES:
        h.update(name.encode() + b"\0")
        p = folder / name
        if p.exists():
            h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


# Reviews only: end-user thumbs say something is wrong, not what is right.
_SQL = """
SELECT toString(c.event_id), c.input, c.prompt, c.output, r.corrected, r.rating
FROM (
    SELECT event_id,
           argMax(corrected_output, ts) AS corrected,
           argMax(rating, ts) AS rating
    FROM feedback FINAL
    WHERE app_id = {app:String} AND source = 'reviewer' AND ts >= {since:DateTime64(3, 'UTC')}
    GROUP BY event_id
) AS r
INNER JOIN (
    SELECT event_id, any(input) AS input, any(prompt) AS prompt, any(output) AS output
    FROM llm_calls FINAL
    WHERE app_id = {app:String} AND model = {model:String}
    GROUP BY event_id
) AS c ON c.event_id = r.event_id
WHERE r.corrected != '' OR ifNull(r.rating, 0) >= {min_rating:UInt8}
ORDER BY c.event_id
"""


class ClickHouseSnapshot:
    def __init__(self, client: Client):
        self.client = client

    def snapshot(self, filters: DatasetFilters, out_dir: Path) -> DatasetVersion:
        since = filters.since or datetime(1970, 1, 1)
        rows = self.client.query(_SQL, parameters={
            "app": filters.app_id, "model": filters.model, "since": since, "min_rating": filters.min_rating,
        }).result_rows
        out_dir.mkdir(parents=True, exist_ok=True)
        sft, pref = [], []
        for event_id, input_json, prompt, output, corrected, _rating in rows:
            messages = _messages(input_json, prompt)
            if corrected:
                sft.append({"messages": messages, "completion": corrected, "event_id": event_id})
                if output and output != corrected:
                    pref.append({"messages": messages, "chosen": corrected, "rejected": output, "event_id": event_id})
            elif output:
                sft.append({"messages": messages, "completion": output, "event_id": event_id})
        for name, lines in zip(FILES, (sft, pref), strict=True):
            # Write then rename: a reader never sees half a file.
            tmp = out_dir / f".{name}.{uuid.uuid4().hex}"
            tmp.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
            tmp.replace(out_dir / name)
        counts = {"sft": len(sft), "preference": len(pref)}
        version = DatasetVersion(str(out_dir.resolve()), content_hash(out_dir), counts)
        manifest = {**asdict(version), "filters": {**asdict(filters), "since": str(filters.since or "")}}
        (out_dir / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        return version
