"""Review settings an admin changes at run time: the label set, the toxicity and judge
thresholds that queue a call, and the audit sample rates (default and per app).

They live in ClickHouse (feedback_runtime_settings, migration 0015): one row per change,
the latest per name wins. Every feedback instance reads it back at most `ttl_s` seconds
after a change, so all of them (and the task builder) apply the same values. Names not set
there keep their LOOKOUT_* value. A stored value is validated as its settings field is
(the audit app rates as the AppMap they are), so a row that no longer fits is refused
where it is read, not applied half-parsed.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from lookout.core.session import Session

from .settings import FeedbackSettings

TABLE = "feedback_runtime_settings"
# The FeedbackSettings fields an admin may override, and how each is stored (JSON).
FIELDS = ("review_labels", "review_toxicity_threshold", "review_judge_threshold", "review_audit_rate",
          "review_audit_app_rates")


@functools.cache
def _adapter(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(FeedbackSettings.model_fields[name].rebuild_annotation())


def _stored(value: Any) -> str:
    # JSON of the value as the environment variable would hold it ('a=0.1,b=0' for a map).
    return json.dumps(value if isinstance(value, int | float | str) else str(value))


class RuntimeSettings:
    def __init__(self, base: FeedbackSettings, session: Session, ttl_s: float = 2.0):
        self.base = base
        self.session = session
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached: tuple[float, FeedbackSettings] | None = None

    def current(self) -> FeedbackSettings:
        """The settings with the admin's overrides applied (blocking: run it in a thread)."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl_s:
                return self._cached[1]
        rows = self.session.rows(f"SELECT name, argMax(value, ts) FROM {TABLE} GROUP BY name")
        overrides = {name: _adapter(name).validate_python(json.loads(value)) for name, value in rows
                     if name in FIELDS}
        effective = self.base.model_copy(update=overrides)
        with self._lock:
            self._cached = (time.monotonic(), effective)
        return effective

    def update(self, values: dict[str, Any], who: str) -> FeedbackSettings:
        unknown = set(values) - set(FIELDS)
        assert not unknown, unknown
        for name, value in values.items():  # what could not be read back is never stored
            _adapter(name).validate_python(value)
        ts = datetime.now(UTC)
        self.session.insert(TABLE, [[name, _stored(v), who, ts] for name, v in values.items()],
                            ["name", "value", "updated_by", "ts"])
        with self._lock:
            self._cached = None
        return self.current()
