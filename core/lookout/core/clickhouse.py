"""ClickHouse client factory: one code path for embedded chdb and a ClickHouse server."""

from __future__ import annotations

import threading
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from .settings import CommonSettings

_chdb_lock = threading.Lock()
_chdb_path: str | None = None


class ClickHouseConfigError(ValueError):
    pass


def _chdb_dir(dsn: str) -> str:
    # chdb:///abs/path or chdb://relative/path
    rest = dsn[len("chdb://") :]
    if not rest:
        raise ClickHouseConfigError("chdb DSN needs a path: chdb:///var/lib/lookout/chdb")
    return rest


def connect(settings: CommonSettings, *, database: str | None = None) -> Client:
    """A client bound to the settings' database (created if missing).

    chdb locks a path to one process and a process can open one path only, so every
    client of this process must use the same chdb path; a second path is a clear error
    rather than chdb's internal one.
    """
    global _chdb_path
    dsn = settings.clickhouse_dsn
    db = database or settings.clickhouse_database
    if dsn.startswith("chdb:"):
        path = _chdb_dir(dsn)
        try:
            import chdb  # noqa: F401 -- an extra (550 MB): server images leave it out
        except ImportError:
            raise ClickHouseConfigError(
                f"LOOKOUT_CLICKHOUSE_DSN {dsn!r} is an embedded store, which needs chdb: "
                "pip install 'lookout-core[chdb]' (or point it at a ClickHouse server, http(s)://host:8123)"
            ) from None
        import os

        path = os.path.abspath(path)
        with _chdb_lock:
            if _chdb_path is not None and _chdb_path != path:
                raise ClickHouseConfigError(
                    f"this process already opened chdb at {_chdb_path}; it cannot open {path} too"
                )
            os.makedirs(path, exist_ok=True)
            client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
            _chdb_path = path
    else:
        parsed = urlparse(dsn)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ClickHouseConfigError(
                f"LOOKOUT_CLICKHOUSE_DSN must be chdb:///path or http(s)://host:port, got {dsn!r}"
            )
        kwargs = {}
        if parsed.scheme == "https":
            kwargs["verify"] = settings.clickhouse_verify
            if settings.clickhouse_ca_cert:
                kwargs["ca_cert"] = settings.clickhouse_ca_cert
        client = clickhouse_connect.get_client(dsn=dsn, **kwargs)
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.database = db
    return client
