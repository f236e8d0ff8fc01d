"""Handing ClickHouse bytes that a statement reads as a table, for chdb and a server alike.

A batch of records (the fast path's INSERT ... SELECT) and the keys of the already-stored
check travel as data, never inside the SQL text: ClickHouse's parser takes ~70 µs per
(app, id) tuple literal, which made the check of a 5 000-record batch cost more than its
insert, and data needs no escaping. A server reads an INSERT's data from the request body
through `input()` and a query's from an external table (HTTP multipart); chdb has neither
(it ignores data after an `input()` query and refuses external data), so it reads a
temporary file through `file()`. The statement is the same text around the source.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.external import ExternalData

from lookout.core.session import Session

# Where a statement reads the carried data (a `{...}` ClickHouse parameter name never has this form).
SOURCE = "{lookout_source}"


def settings_clause(settings: Mapping[str, int | str]) -> str:
    """A statement's own SETTINGS clause. Passed as the client's `settings` instead, chdb's
    backend SETs each one before the statement and restores it after (two queries a
    setting, ~30 for the fast path's), where a server takes them as URL parameters."""
    parts = []
    for name, value in settings.items():
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a setting name: {name!r}")
        if isinstance(value, str):
            if "'" in value or "\\" in value:
                raise ValueError(f"unusable setting value for {name}: {value!r}")
            parts.append(f"{name} = '{value}'")
        else:
            parts.append(f"{name} = {int(value)}")
    return "SETTINGS " + ", ".join(parts)


@dataclass(frozen=True)
class Carrier:
    """How this sink's ClickHouse gets a statement's data: a file (chdb) or the request (a server)."""

    session: Session
    chdb: bool

    def insert(self, statement: str, data: bytes, fmt: str, structure: str) -> None:
        """Run `statement` (SOURCE where the data is read) with the data as its source."""
        if not self.chdb:
            self.session.command(statement.replace(SOURCE, f"input('{_plain(structure)}')"), data=data)
            return
        with self._file(data) as path:
            self.session.command(statement.replace(SOURCE, _file(path, fmt, structure)))

    def query(self, statement: str, data: bytes, fmt: str, structure: str,
              parameters: Mapping | None = None) -> list[Sequence[Any]]:
        """Rows of `statement` (SOURCE where the data is read, as often as needed)."""
        if not self.chdb:
            external = ExternalData(file_name="lookout_data", data=data, fmt=fmt, structure=_plain(structure))
            return list(self.session.query(statement.replace(SOURCE, "lookout_data"), parameters,
                                           external_data=external).result_rows)
        with self._file(data) as path:
            return list(self.session.query(statement.replace(SOURCE, _file(path, fmt, structure)),
                                           parameters).result_rows)

    @staticmethod
    @contextlib.contextmanager
    def _file(data: bytes) -> Iterator[str]:
        fd, path = tempfile.mkstemp(prefix="lookout-sink-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            yield path
        finally:
            os.unlink(path)


def _plain(text: str) -> str:
    if "'" in text or "\\" in text:
        raise ValueError(f"unusable inside '...': {text!r}")
    return text


def _file(path: str, fmt: str, structure: str) -> str:
    return f"file('{_plain(path)}', '{_plain(fmt)}', '{_plain(structure)}')"
