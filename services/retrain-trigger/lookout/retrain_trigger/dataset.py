"""Training data snapshots from reviewed feedback, one folder per run.

The lines, the filters and the content hash are lookout.core.datasets, the same code the
feedback service's dataset export runs, so a run's dataset_hash equals the hash an export
with the same filters reports. `DatasetSource` is the seam a test or another store can
fill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lookout.core.datasets import FILES, DatasetFilters, content_hash, export
from lookout.core.session import ClientLike, Session

__all__ = ["FILES", "ClickHouseSnapshot", "DatasetFilters", "DatasetSource", "DatasetVersion", "content_hash"]


@dataclass(frozen=True)
class DatasetVersion:
    uri: str  # the snapshot folder
    sha256: str
    counts: dict[str, int] = field(default_factory=dict)


class DatasetSource(Protocol):
    def snapshot(self, filters: DatasetFilters, out_dir: Path) -> DatasetVersion: ...


class ClickHouseSnapshot:
    """Snapshots of the reviews whose signature verifies under `signing_secret` (the
    feedback service's LOOKOUT_REVIEW_SIGNING_SECRET): a row someone wrote straight onto
    llm.feedback is never trained on."""

    def __init__(self, db: Session | ClientLike, signing_secret: str):
        self.session = Session.of(db)
        self.signing_secret = signing_secret

    def snapshot(self, filters: DatasetFilters, out_dir: Path) -> DatasetVersion:
        done = export(self.session, filters, out_dir, self.signing_secret)
        return DatasetVersion(str(done.folder), done.sha256, done.counts)
