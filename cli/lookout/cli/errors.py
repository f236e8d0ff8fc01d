"""What the `lookout` command says when something goes wrong: one line that names the
problem and what to do, never a traceback (unless -v)."""

from __future__ import annotations

from urllib.parse import urlparse, urlunparse


class CliError(Exception):
    """A failure the command explains itself; `status` is the exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def safe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    parsed = urlparse(dsn)
    if parsed.password is None:
        return dsn
    netloc = f"{parsed.username}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
    return urlunparse(parsed._replace(netloc=netloc))


def explain(exc: BaseException) -> tuple[str, int]:
    """(message, exit status) for an exception that ended a command."""
    from pydantic import ValidationError

    from lookout.core.clickhouse import ClickHouseConfigError

    if isinstance(exc, CliError):
        return str(exc), exc.status
    if isinstance(exc, ClickHouseConfigError):
        return str(exc), 2
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"LOOKOUT_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        return f"invalid setting: {problems}", 2
    text = str(exc)
    if "lock" in text.lower() and ("chdb" in text.lower() or "another server" in text.lower()):
        return ("the embedded ClickHouse data dir is in use by another process (is `lookout up` running on it? "
                "chdb opens a data dir from one process at a time; stop it first)"), 1
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}", 1
