"""Review settings an admin changes at run time: the label set, the toxicity and judge
thresholds that queue a call, and the audit sample rates (default and per app).

They live in ClickHouse, in a table this service creates itself (CREATE TABLE IF NOT
EXISTS, not a numbered migration): one row per change, the latest per name wins. Every
feedback instance reads it back at most `ttl_s` seconds after a change, so all of them (and
the task builder) apply the same values. Names not set there keep their LOOKOUT_* value.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from .settings import FeedbackSettings
from .store import Db

TABLE = "feedback_runtime_settings"
DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (name String, value String, updated_by String, "
       "ts DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree(ts) ORDER BY name")
# The FeedbackSettings fields an admin may override, and how each is stored (JSON).
FIELDS = ("review_labels", "review_toxicity_threshold", "review_judge_threshold", "review_audit_rate",
          "review_audit_app_rates")


class RuntimeSettings:
    def __init__(self, base: FeedbackSettings, db: Db, ttl_s: float = 2.0):
        self.base = base
        self.db = db
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached: tuple[float, FeedbackSettings] | None = None

    def create(self) -> None:
        with self.db._lock:
            self.db.client.command(DDL)

    def current(self) -> FeedbackSettings:
        """The settings with the admin's overrides applied (blocking: run it in a thread)."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl_s:
                return self._cached[1]
        rows = self.db.rows(f"SELECT name, argMax(value, ts) FROM {TABLE} GROUP BY name")
        overrides = {name: json.loads(value) for name, value in rows if name in FIELDS}
        effective = self.base.model_copy(update=overrides)
        with self._lock:
            self._cached = (time.monotonic(), effective)
        return effective

    def update(self, values: dict[str, Any], who: str) -> FeedbackSettings:
        unknown = set(values) - set(FIELDS)
        assert not unknown, unknown
        ts = datetime.now(UTC)
        self.db.insert(TABLE, [[name, json.dumps(v), who, ts] for name, v in values.items()],
                       ["name", "value", "updated_by", "ts"])
        with self._lock:
            self._cached = None
        return self.current()
