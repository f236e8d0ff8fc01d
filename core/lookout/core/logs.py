"""Logging set-up of every Lookout process: one format, LOOKOUT_LOG_LEVEL for Lookout's
own loggers, and the chatty libraries (Kafka client, HTTP clients, per-request access
lines, model loaders) held at WARNING unless the level is DEBUG."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = (
    "aiokafka", "kafka", "httpx", "httpcore", "urllib3", "filelock", "multipart", "uvicorn.access",
    "huggingface_hub", "sentence_transformers", "transformers", "torch", "clickhouse_connect", "chdb",
)
_MARK = "_lookout_handler"


def level_of(name: str | int) -> int:
    """The numeric level of LOOKOUT_LOG_LEVEL ('info', 'DEBUG', 20...); ValueError naming it."""
    if isinstance(name, int):
        return name
    level = logging.getLevelNamesMapping().get(name.strip().upper())
    if level is None:
        raise ValueError(f"LOOKOUT_LOG_LEVEL: unknown level {name!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def configure_logging(level: str | int = "INFO") -> None:
    """Idempotent: a second call replaces the handler of the first."""
    numeric = level_of(level)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in QUIET:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
