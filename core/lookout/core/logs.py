"""Logging set-up of every Lookout process: one format (text, or JSON lines with
LOOKOUT_LOG_FORMAT=json), LOOKOUT_LOG_LEVEL for Lookout's own loggers, and the chatty
libraries (Kafka client, HTTP clients, per-request access lines, model loaders) held at
WARNING unless the level is DEBUG.

The `extra` convention. A log line about one thing names it with these keys, so a log
search finds every line of one event, stream or run across services:

    log.warning("judge call failed", extra={"event_id": str(call.event_id), "app_id": call.app_id})
    log.info("run launched", extra={"run_id": str(run.run_id), "app_id": run.app_id})

| key | what |
|---|---|
| `event_id` | an LLM call's event id |
| `app_id` | the app the line is about |
| `stream` | a drift stream key (`app/model` or `app/model/prompt_version`) |
| `run_id` | a retrain run |
| `topic`, `partition`, `offset` | a Kafka record |
| `group` | a consumer group |
| `service` | the service, where one process runs several (`lookout up`) |
| `elapsed_s` | how long the step the line reports took |

Any other key passes through too (JSON: as a field; text: appended as key=value), but
stick to these where they fit. Values are written with `str()` when they are not JSON.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LogFormat = Literal["text", "json"]
QUIET = (
    "aiokafka", "kafka", "httpx", "httpcore", "urllib3", "filelock", "multipart", "uvicorn.access",
    "huggingface_hub", "sentence_transformers", "transformers", "torch", "clickhouse_connect", "chdb",
    "asyncio", "evidently", "onnxruntime", "matplotlib", "PIL", "numexpr",
)
_MARK = "_lookout_handler"
# aiokafka logs these at ERROR and then retries them itself; on every start against a fresh
# broker the group coordinator is briefly "not available", and an ERROR line there told
# users something was broken when nothing was. Shown at DEBUG.
_RETRIED = {
    "aiokafka.consumer.group_coordinator": (
        "GroupCoordinatorNotAvailableError", "NotCoordinatorForGroupError", "CoordinatorLoadInProgressError"),
}

# What every LogRecord has; the rest of its __dict__ came in through `extra`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def level_of(name: str | int) -> int:
    """The numeric level of LOOKOUT_LOG_LEVEL ('info', 'DEBUG', 20...); ValueError naming it."""
    if isinstance(name, int):
        return name
    level = logging.getLevelNamesMapping().get(name.strip().upper())
    if level is None:
        raise ValueError(f"LOOKOUT_LOG_LEVEL: unknown level {name!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def extras_of(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a call passed with `extra=`."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, message, the `extra`
    fields, and `exc` (the traceback) when there is one. A message never spans lines."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extras_of(record).items():
            out.setdefault(key, _plain(value))
        if record.exc_info:
            out["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The text format, with the `extra` fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extras_of(record)
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        return head + " " + " ".join(f"{k}={v}" for k, v in fields.items()) + sep + tail


def formatter(fmt: LogFormat | str = "text") -> logging.Formatter:
    kind = fmt.strip().lower()
    if kind == "json":
        return JsonFormatter()
    if kind == "text":
        return TextFormatter()
    raise ValueError(f"LOOKOUT_LOG_FORMAT: unknown format {fmt!r}; use text or json")


def configure_logging(level: str | int = "INFO", fmt: LogFormat | str = "text") -> None:
    """Idempotent: a second call replaces the handler of the first."""
    numeric = level_of(level)
    chosen = formatter(fmt)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(chosen)
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in QUIET:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    for name, errors in _RETRIED.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _Retried)]:
            logger.removeFilter(old)
        if numeric > logging.DEBUG:
            logger.addFilter(_Retried(errors))


class _Retried(logging.Filter):
    """Drops a library's error line for a condition the library retries by itself."""

    def __init__(self, errors: tuple[str, ...]):
        super().__init__()
        self.errors = errors

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(error in message for error in self.errors)


# -- progress of a long start (`lookout up`) ---------------------------------------------

progress_log = logging.getLogger("lookout.progress")


@contextlib.contextmanager
def step(what: str, *, logger: logging.Logger | None = None, **fields: Any) -> Iterator[None]:
    """Say what is starting, then how long it took (or that it failed, and after how long):

        with step("opening ClickHouse (chdb) and applying migrations"):
            ...

    logs `opening ClickHouse ... ...` and then `opening ClickHouse ...: done in 1.2 s` with
    `elapsed_s` in the record's fields."""
    out = logger or progress_log
    out.info("%s ...", what, extra=fields)
    began = time.monotonic()
    try:
        yield
    except BaseException as exc:
        out.warning("%s: failed after %.1f s (%s)", what, time.monotonic() - began, type(exc).__name__,
                    extra={**fields, "elapsed_s": round(time.monotonic() - began, 3)})
        raise
    elapsed = time.monotonic() - began
    out.info("%s: done in %.1f s", what, elapsed, extra={**fields, "elapsed_s": round(elapsed, 3)})


@contextlib.asynccontextmanager
async def astep(what: str, *, logger: logging.Logger | None = None, **fields: Any):
    """`step` for async code (an `async with`)."""
    with step(what, logger=logger, **fields):
        yield
