"""Ending a service's background tasks on stop: cancel, then wait until they have ended, so
nothing of theirs still runs when stop() closes the clients they use."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Task | None) -> None:
    """Cancel the tasks (None ones are skipped: never started) and wait for all of them.

    A task that had already ended with an error is logged, not raised: stop() goes on to
    close the rest (the error was the readiness check's to report while it ran). The
    caller's own cancellation still reaches the caller."""
    found = [task for task in tasks if task is not None]
    for task in found:
        task.cancel()
    results = await asyncio.gather(*found, return_exceptions=True)
    for task, result in zip(found, results, strict=True):
        if isinstance(result, Exception):  # CancelledError is a BaseException: the expected end
            log.error("task %s had ended with an error", task.get_name(), exc_info=result)
