"""A client's settings: its arguments, else the LOOKOUT_* environment, checked once when the
client is made (a bad app id or sample rate fails there, not on the first call)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ._events import Redactor
from ._ids import sample_key

__version__ = "0.1.0"

logger = logging.getLogger("lookout_sdk")

_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_MAX_EVENTS_PER_REQUEST = 5000  # ingest's per-request limit
_SAMPLE_SCALE = 1 << 32  # sample_key's range


def parse_sample_rate(value: float | Mapping[str, float] | str | None) -> dict[str, float]:
    """{app_id or "*": rate}. From the environment: "0.1" or "app-a=0.1,app-b=0.5,*=1"."""
    if value is None:
        return {"*": 1.0}
    if isinstance(value, str):
        if "=" not in value:
            return {"*": float(value)}
        rates = {}
        for part in value.split(","):
            if part.strip():
                app, _, rate = part.partition("=")
                rates[app.strip()] = float(rate)
        return rates
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}
    return {"*": float(value)}


@dataclass(frozen=True)
class Sampler:
    """Which calls are kept. The decision is a pure function of the event id (`sample_key`),
    so `feedback(event_id)` knows without bookkeeping whether its call was sampled out."""

    thresholds: Mapping[str, int]  # per app id; "*" for the others
    default_threshold: int  # the client's own app id

    @classmethod
    def of(cls, rates: Mapping[str, float], app_id: str) -> Sampler:
        for rate in rates.values():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"sample rates must be within [0, 1] (got {dict(rates)})")
        thresholds = {app: int(rate * _SAMPLE_SCALE) for app, rate in rates.items()}
        return cls(thresholds, thresholds.get(app_id, thresholds.get("*", _SAMPLE_SCALE)))

    @property
    def keeps_everything(self) -> bool:
        return all(t >= _SAMPLE_SCALE for t in self.thresholds.values())

    def keeps(self, event_id: str, app_id: str | None) -> bool:
        if app_id is None:
            threshold = self.default_threshold
        else:
            threshold = self.thresholds.get(app_id, self.thresholds.get("*", _SAMPLE_SCALE))
        return sample_key(event_id) < threshold


@dataclass(frozen=True)
class Config:
    """What `Lookout(...)` was given, completed from the environment (see its docstring)."""

    endpoint: str | None  # None: the client is disabled
    api_key: str | None
    app_id: str
    environment: str
    sampler: Sampler
    spill_dir: str | None  # only when enabled: a disabled client has nothing to spill
    spill_max_bytes: int
    redact: Redactor | None
    max_queue_size: int
    batch_size: int
    flush_interval: float
    gzip: bool
    timeout: float
    retry_budget: float  # seconds one batch is retried
    backoff_base: float
    backoff_max: float
    shutdown_timeout: float
    max_request_bytes: int
    headers: Mapping[str, str]

    @property
    def enabled(self) -> bool:
        return self.endpoint is not None

    @classmethod
    def load(
        cls,
        *,
        endpoint: str | None,
        api_key: str | None,
        app_id: str | None,
        environment: str | None,
        sample_rate: float | Mapping[str, float] | None,
        spill_dir: str | os.PathLike[str] | None,
        spill_max_bytes: int,
        redact: Redactor | None,
        max_queue_size: int,
        batch_size: int,
        flush_interval: float,
        gzip: bool,
        timeout: float,
        max_retry_time: float | None,
        backoff_base: float,
        backoff_max: float,
        shutdown_timeout: float,
        max_request_bytes: int,
    ) -> Config:
        env = os.environ
        endpoint = endpoint or env.get("LOOKOUT_ENDPOINT") or None
        endpoint = endpoint.rstrip("/") if endpoint else None
        api_key = api_key or env.get("LOOKOUT_API_KEY") or None
        app_id = app_id or env.get("LOOKOUT_APP_ID") or ""
        if endpoint is None:
            # Unconfigured (a laptop, a unit test): log_call still works and returns ids,
            # nothing is sent. Monitoring must not be the reason an app fails to start.
            logger.warning("lookout_sdk: no endpoint (LOOKOUT_ENDPOINT); events will not be sent")
        elif not _APP_ID.match(app_id):
            raise ValueError(f"app_id must match {_APP_ID.pattern} (got {app_id!r}); set it or LOOKOUT_APP_ID")
        rates = parse_sample_rate(sample_rate if sample_rate is not None else env.get("LOOKOUT_SAMPLE_RATE"))
        spill = spill_dir or env.get("LOOKOUT_SPILL_DIR") or None
        spill = os.fspath(spill) if spill and endpoint is not None else None
        headers = {"Content-Type": "application/json", "User-Agent": f"lookout-sdk-python/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return cls(
            endpoint=endpoint,
            api_key=api_key,
            app_id=app_id,
            environment=environment or env.get("LOOKOUT_ENVIRONMENT") or "production",
            sampler=Sampler.of(rates, app_id),
            spill_dir=spill,
            spill_max_bytes=spill_max_bytes,
            redact=redact,
            max_queue_size=max_queue_size,
            batch_size=max(1, min(batch_size, _MAX_EVENTS_PER_REQUEST)),
            flush_interval=flush_interval,
            gzip=gzip,
            timeout=timeout,
            # With a spill directory a batch goes to disk after a short while and the sender
            # moves on; without one, retrying longer is the only way not to lose it.
            retry_budget=max_retry_time if max_retry_time is not None else (5.0 if spill else 60.0),
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            shutdown_timeout=shutdown_timeout,
            max_request_bytes=max_request_bytes,
            headers=headers,
        )
