"""The process around the clients: every client flushes at interpreter exit (and at the
exit of a multiprocessing worker, which skips atexit), and starts afresh in a forked child."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import weakref
from typing import Protocol

logger = logging.getLogger("lookout_sdk")


class Managed(Protocol):
    def _close_at_exit(self) -> None: ...

    def _after_fork(self) -> None: ...


_clients: weakref.WeakSet[Managed] = weakref.WeakSet()
_exit_hooks_pid: int | None = None


def track(client: Managed) -> None:
    """Flush `client` at exit and reset it in a forked child, for as long as it lives."""
    _clients.add(client)


def ensure_exit_hooks() -> None:
    """multiprocessing children leave through os._exit, which skips atexit; they do run
    multiprocessing's own finalizers, so the flush is registered there too (per process:
    a forked child starts with its parent's finalizer registry cleared). Called when a
    sender starts."""
    global _exit_hooks_pid
    if _exit_hooks_pid == os.getpid():
        return
    _exit_hooks_pid = os.getpid()
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, _close_all, exitpriority=100)


def _close_all() -> None:
    for client in list(_clients):
        try:
            client._close_at_exit()
        except Exception:
            logger.exception("lookout_sdk: flush at exit failed")


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._after_fork()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
