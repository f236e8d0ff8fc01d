"""The services the embedded stack runs beside ingest and the sink, each as a Component:
start/stop in the one asyncio loop, its HTTP routers mounted on the one port, its
readiness checks added to /readyz.

With `--demo`, builders get the demo's speed (else None): the retrain trigger runs the demo
policy (see demo_retrain.py), and the judge gets the demo evaluator (demo_evaluator.py)
when no LOOKOUT_JUDGE_BASE_URL is set.

Each service gets its own ClickHouse client on the stack's chdb path: clients on one
path share the engine but not a session, so one service's queries never interleave with
another's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter

from lookout.core import clickhouse
from lookout.ingest.settings import IngestSettings

log = logging.getLogger(__name__)

Check = Callable[[], str | None]


@dataclass
class Component:
    name: str
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]
    routers: list[APIRouter] = field(default_factory=list)
    checks: dict[str, Check] = field(default_factory=dict)


def _settings(cls, base: IngestSettings, **extra):
    """A service's settings: the stack's shared values over whatever LOOKOUT_* sets."""
    shared = {k: v for k, v in base.model_dump().items() if k in cls.model_fields}
    return cls(**{**shared, **extra})


def judge(base: IngestSettings, data_dir: Path, secret: Callable[[str], str],
          demo_speed: float | None = None) -> Component:
    from lookout.judge.app import agreement_router
    from lookout.judge.service import JudgeService
    from lookout.judge.settings import JudgeSettings

    evaluator = None
    if demo_speed is not None and not JudgeSettings().judge_base_url:
        # The demo's own evaluator (relevance as MiniLM cosine, named so in every score),
        # unless LOOKOUT_JUDGE_BASE_URL points the judge at a real model.
        from .demo_evaluator import DemoEvaluator

        evaluator = DemoEvaluator()
    settings = _settings(
        JudgeSettings, base, judge_sampling_secret=secret("judge-sampling-secret"),
        **(evaluator.judge_settings() if evaluator else {}),
    )
    service = JudgeService(settings, client=clickhouse.connect(settings))

    async def start() -> None:
        if evaluator is not None:
            await evaluator.start()
        await service.start()

    async def stop() -> None:
        await service.stop()
        if evaluator is not None:
            await evaluator.stop()

    return Component("judge", start, stop, [agreement_router(service)],
                     {f"judge.{k}": v for k, v in service.checks().items()})


def drift(base: IngestSettings, data_dir: Path, secret: Callable[[str], str],
          demo_speed: float | None = None) -> Component:
    from lookout.drift.service import DriftService
    from lookout.drift.settings import DriftSettings

    # The service in the one shape: its own Session, key store, routers and checks.
    service = DriftService(_settings(DriftSettings, base))
    return Component(service.name, service.start, service.stop, list(service.routers()),
                     {f"{service.name}.{k}": v for k, v in service.checks().items()})


def retrain(base: IngestSettings, data_dir: Path, secret: Callable[[str], str],
            demo_speed: float | None = None) -> Component:
    from lookout.retrain_trigger.service import RetrainService
    from lookout.retrain_trigger.settings import RetrainSettings

    from .demo_retrain import retrain_settings

    demo = retrain_settings(data_dir, demo_speed) if demo_speed else {}
    settings = _settings(
        RetrainSettings, base,
        retrain_dataset_dir=str(data_dir / "datasets"), retrain_output_dir=str(data_dir / "runs"),
        review_signing_secret=secret("review-signing-secret"), **demo,
    )
    service = RetrainService(settings, client=clickhouse.connect(settings))
    return Component("retrain-trigger", service.start, service.stop, [service.router()],
                     {"retrain": service.ready})


def feedback(base: IngestSettings, data_dir: Path, secret: Callable[[str], str],
             demo_speed: float | None = None) -> Component:
    from lookout.feedback.app import FeedbackService
    from lookout.feedback.settings import FeedbackSettings

    settings = _settings(
        FeedbackSettings, base,
        feedback_token_secret=secret("feedback-token-secret"),
        review_signing_secret=secret("review-signing-secret"),
        review_admin_user="admin",
        review_admin_password=secret("review-admin-password"),
    )
    service = FeedbackService(settings, client=clickhouse.connect(settings))
    return Component("feedback", service.start, service.stop, [service.router()], {"feedback": service.ready})


# Started in this order after ingest and the sink, stopped in reverse.
Builder = Callable[[IngestSettings, Path, Callable[[str], str], float | None], Component]
BUILDERS: list[Builder] = [judge, drift, feedback, retrain]
