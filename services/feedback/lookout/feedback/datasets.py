"""Dataset export: reviewed calls as SFT and preference JSONL for fine-tuning, versioned by
content hash. What goes into the lines, the filters and the hash are lookout.core.datasets
(shared with the retrain trigger's snapshots); this module adds the feedback service's
layout (one folder per content hash under the dataset dir) and the `dataset_versions`
record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lookout.core.datasets import APPROVED_RATING, Built, DatasetFilters, build, write
from lookout.core.session import ClientLike, Session

__all__ = ["APPROVED_RATING", "Built", "DatasetFilters", "DatasetVersion", "build", "export_dataset"]


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
    unverified: int = 0


def export_dataset(db: Session | ClientLike, filters: DatasetFilters, out_dir: str | os.PathLike,
                   signing_secret: str) -> DatasetVersion:
    """Write sft.jsonl and preference.jsonl under out_dir/<dataset_id>/ and record the
    version in dataset_versions. The id is the content hash's prefix, so exporting the
    same reviews again lands in the same folder with the same hash. Only reviews whose
    signature verifies under `signing_secret` are in it. Each query takes the client's
    Session lock; the files are written outside it."""
    session = Session.of(db)
    built = build(session, filters, signing_secret)
    dataset_id = built.sha256[:16]
    done = write(built, Path(out_dir) / dataset_id, filters)
    version = DatasetVersion(dataset_id, done.sha256, datetime.now(UTC), filters, built.sft_count,
                             built.preference_count, str(done.folder), done.files, built.unverified)
    session.insert(
        "dataset_versions",
        [[dataset_id, version.sha256, version.created_at, filters.as_json(), built.sft_count,
          built.preference_count, version.location]],
        ["dataset_id", "sha256", "created_at", "filters", "sft_count", "preference_count", "location"],
    )
    return version
