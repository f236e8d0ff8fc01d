"""lookout.drift: embedding and token-distribution drift per (app, model) stream.

`DriftService` (service.py) is the worker with start()/stop() for one asyncio loop;
`python -m lookout.drift` serves it with its HTTP API."""

from .service import DriftService
from .settings import DriftSettings

__all__ = ["DriftService", "DriftSettings"]
