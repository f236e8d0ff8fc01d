"""The shape every Lookout service has, so one runner boots any of them and the embedded
stack is a loop over them:

- `name`: short and stable (it names readiness checks in the embedded stack, tasks, logs);
- `start()` / `stop()`: stop finishes the batch in hand and commits, then closes clients;
  it is also called after a failed or interrupted start, so it must cope with a partial one;
- `routers()`: the service's HTTP routes (built with api_errors.error_router), without the
  ops routes, which the runner adds;
- `checks()`: readiness checks by name, each None when fine, else the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from fastapi import APIRouter

from .ops import ReadinessCheck


@runtime_checkable
class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def routers(self) -> Sequence[APIRouter]: ...

    def checks(self) -> Mapping[str, ReadinessCheck]: ...
