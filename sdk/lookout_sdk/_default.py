"""The process-wide default client: what `observe`, `wrap_openai` and friends log to when
they are not handed one."""

from __future__ import annotations

import threading
from typing import Any

from ._caller import ClientBase
from ._client import Lookout
from ._context import provide_default_client

_client: ClientBase | None = None
_lock = threading.Lock()


def init(**kwargs: Any) -> Lookout:
    """Create a `Lookout` (same arguments) and make it the default for `observe`,
    `wrap_openai` and friends when they are not handed a client.

    >>> import lookout_sdk
    >>> lookout_sdk.init(app_id="support-bot")  # endpoint and key from LOOKOUT_* env vars
    """
    client = Lookout(**kwargs)
    set_client(client)
    return client


def set_client(client: ClientBase) -> None:
    """Make `client` (a Lookout or an AsyncLookout) the default one."""
    global _client
    with _lock:
        _client = client


def get_client() -> ClientBase:
    """The default client; created from the LOOKOUT_* environment on first use."""
    global _client
    client = _client
    if client is None:
        with _lock:
            if _client is None:
                _client = Lookout()
            client = _client
    return client


provide_default_client(get_client)
