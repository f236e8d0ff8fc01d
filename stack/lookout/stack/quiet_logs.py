"""Kafka client logs while the broker is away: every producer and consumer of the stack
logs each failed reconnect (thousands of lines in the seconds a broker restart takes).
One line per message kind and 10 s goes to the terminal, with how many like it were held
back; /readyz says what is going on meanwhile."""

from __future__ import annotations

import logging
import time


class RepeatFilter(logging.Filter):
    def __init__(self, prefix: str = "aiokafka", window_s: float = 10.0):
        super().__init__()
        self.prefix = prefix
        self.window_s = window_s
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix) or record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)  # the message's template: one kind, whatever its arguments
        now = time.monotonic()
        last, held = self._last.get(key, (float("-inf"), 0))
        if now - last < self.window_s:
            self._last[key] = (last, held + 1)
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self.window_s:.0f} s)"
        return True


def install(window_s: float = 10.0) -> None:
    """On the root logger's handlers, so records of every aiokafka logger pass through it."""
    quiet = RepeatFilter(window_s=window_s)
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
