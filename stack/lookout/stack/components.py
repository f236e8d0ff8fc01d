"""The services `lookout up` runs, in the order they start (they stop in reverse). Each is in
the one shape of lookout.core.service (start, stop, routers, checks), so the stack is a loop
over this list: no adapter per service, only the settings the embedded layout gives each.

The order is the one dependency there is: ingest first (it makes the topics), then the sink
(so accepted events are stored from the start), and the demo evaluator before the judge
that asks it; the rest only need the topics.

With `--demo`, builders get the demo's speed (else None): the retrain trigger runs the demo
policy (see demo_retrain.py), and the judge gets the demo evaluator (demo_evaluator.py)
when no LOOKOUT_JUDGE_BASE_URL is set.

Ingest and the sink share the stack's ClickHouse client (one Session, one lock); every
other service opens its own on the stack's chdb path: clients on one path share the engine
but not a session, so one service's queries never interleave with another's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client
from pydantic_settings import BaseSettings

from lookout.core.service import Service
from lookout.core.session import Session
from lookout.ingest.service import IngestService
from lookout.ingest.settings import IngestSettings
from lookout.sink.service import SinkService
from lookout.sink.settings import SinkSettings

T = TypeVar("T", bound=BaseSettings)


@dataclass(frozen=True)
class Layout:
    """What the embedded stack gives every service: its shared settings (ports, broker,
    chdb path, PII secret), the stack's client, the data dir and its kept secrets."""

    base: IngestSettings
    client: Client
    data_dir: Path
    secret: Callable[[str], str]
    demo_speed: float | None = None


def _settings(cls: type[T], base: IngestSettings, **extra: Any) -> T:
    """A service's settings: the stack's shared values over whatever LOOKOUT_* sets."""
    # JSON mode: per-app maps (AppMap) as their text, which every service's settings read.
    shared = {k: v for k, v in base.model_dump(mode="json").items() if k in cls.model_fields}
    return cls(**{**shared, **extra})


def judge(layout: Layout) -> list[Service]:
    from lookout.judge.service import JudgeService
    from lookout.judge.settings import JudgeSettings

    services: list[Service] = []
    extra: dict[str, Any] = {}
    if layout.demo_speed is not None and not JudgeSettings().judge_base_url:
        # The demo's own evaluator (relevance as MiniLM cosine, named so in every score),
        # unless LOOKOUT_JUDGE_BASE_URL points the judge at a real model.
        from .demo_evaluator import DemoEvaluator

        evaluator = DemoEvaluator()
        services.append(evaluator)
        extra = evaluator.judge_settings()
    settings = _settings(JudgeSettings, layout.base, judge_sampling_secret=layout.secret("judge-sampling-secret"),
                         review_signing_secret=layout.secret("review-signing-secret"), **extra)
    services.append(JudgeService(settings, session=Session.connect(settings)))
    return services


def drift(layout: Layout) -> Service:
    from lookout.drift.service import DriftService
    from lookout.drift.settings import DriftSettings

    return DriftService(_settings(DriftSettings, layout.base))


def feedback(layout: Layout) -> Service:
    from lookout.feedback.app import FeedbackService
    from lookout.feedback.settings import FeedbackSettings

    settings = _settings(
        FeedbackSettings, layout.base,
        feedback_token_secret=layout.secret("feedback-token-secret"),
        review_signing_secret=layout.secret("review-signing-secret"),
        review_admin_user="admin",
        review_admin_password=layout.secret("review-admin-password"),
    )
    # The overview's page owns / here.
    return FeedbackService(settings, serve_root=False)


def retrain(layout: Layout) -> Service:
    from lookout.retrain_trigger.service import RetrainService
    from lookout.retrain_trigger.settings import RetrainSettings

    from .demo_retrain import retrain_settings

    demo = retrain_settings(layout.data_dir, layout.demo_speed) if layout.demo_speed else {}
    settings = _settings(
        RetrainSettings, layout.base,
        retrain_dataset_dir=str(layout.data_dir / "datasets"), retrain_output_dir=str(layout.data_dir / "runs"),
        review_signing_secret=layout.secret("review-signing-secret"), **demo,
    )
    return RetrainService(settings)


def alerts(layout: Layout) -> Service:
    """The alert evaluator: the embedded mode has no Grafana, so the stack evaluates the
    same rules itself and notifies the receivers LOOKOUT_ALERT_* names."""
    from lookout.alerts.service import AlertService
    from lookout.alerts.settings import AlertSettings

    base = layout.base
    public = AlertSettings().alert_public_url or f"http://{base.http_host}:{base.http_port}"
    settings = _settings(AlertSettings, base, alert_public_url=public)
    return AlertService(settings, Session.connect(settings))


def _sink_nice() -> dict[str, int]:
    """The sink shares this process's cores with intake: its inserts go at nice 10 unless
    LOOKOUT_SINK_INSERT_NICE says otherwise (SinkSettings reads it)."""
    return {} if "LOOKOUT_SINK_INSERT_NICE" in os.environ else {"sink_insert_nice": 10}


def services(layout: Layout) -> list[Service]:
    """Every service of the stack, in start order."""
    base = layout.base
    return [
        IngestService(base, session=Session.of(layout.client)),
        SinkService(_settings(SinkSettings, base, **_sink_nice()), session=Session.of(layout.client)),
        *judge(layout),
        drift(layout),
        feedback(layout),
        retrain(layout),
        alerts(layout),
    ]
