"""lookout.drift: embedding and token-distribution drift per (app, model) stream.

`DriftService` (service.py) is the service (worker and HTTP API) in the one service shape;
`python -m lookout.drift` boots it with run_service. Imported lazily, so the statistics
in lookout.drift.stats load without torch or Kafka (the benchmark runs Evidently's method
in its own environment that way)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .service import DriftService
    from .settings import DriftSettings

__all__ = ["DriftService", "DriftSettings"]


def __getattr__(name: str) -> Any:
    if name == "DriftService":
        from .service import DriftService

        return DriftService
    if name == "DriftSettings":
        from .settings import DriftSettings

        return DriftSettings
    raise AttributeError(name)
