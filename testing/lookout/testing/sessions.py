"""The Session seam for tests: a ClickHouse client wrapper that records every statement a
`Session` (lookout.core.session) sends through it, so a test can say what a service never
reads (e.g. that a consumer never looks a call up in llm_calls).

    recorder = RecordingClient(clickhouse.connect(settings))
    service = FeedbackService(settings, Session(recorder))
    ...start it, clear(), feed it records...
    assert recorder.touching("llm_calls") == []
"""

from __future__ import annotations

import re
import threading
from typing import Any


class RecordingClient:
    """A client (query / command / insert) that notes each call's SQL, then makes it."""

    def __init__(self, client: Any):
        self._client = client
        self._lock = threading.Lock()
        self.statements: list[str] = []

    @property
    def database(self) -> str | None:
        return self._client.database

    def _note(self, text: str) -> None:
        with self._lock:
            self.statements.append(text)

    def query(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self._note(sql)
        return self._client.query(sql, *args, **kwargs)

    def command(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self._note(sql)
        return self._client.command(sql, *args, **kwargs)

    def insert(self, table: str, *args: Any, **kwargs: Any) -> Any:
        self._note(f"INSERT INTO {table}")
        return self._client.insert(table, *args, **kwargs)

    def close(self) -> None:
        self._client.close()

    def clear(self) -> None:
        with self._lock:
            self.statements.clear()

    def touching(self, table: str) -> list[str]:
        """The statements so far that name `table`."""
        name = re.compile(rf"\b{re.escape(table)}\b")
        with self._lock:
            return [s for s in self.statements if name.search(s)]
