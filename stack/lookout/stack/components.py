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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter

from lookout.core.service import Service
from lookout.core.serving import Lifecycle
from lookout.core.session import Session
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

    @classmethod
    def of(cls, service: Service) -> Component:
        """A service in the one shape (lookout.core.service) as it is: its start and stop,
        its routers, its checks named after it (feedback.kafka, ...)."""
        return cls(service.name, service.start, service.stop, list(service.routers()),
                   {f"{service.name}.{name}": check for name, check in service.checks().items()})


def _settings(cls, base: IngestSettings, **extra):
    """A service's settings: the stack's shared values over whatever LOOKOUT_* sets."""
    # JSON mode: per-app maps (AppMap) as their text, which every service's settings read.
    shared = {k: v for k, v in base.model_dump(mode="json").items() if k in cls.model_fields}
    return cls(**{**shared, **extra})


def of_services(name: str, services: Sequence[Service]) -> Component:
    """Services in the one shape as a Component: started in order (a failed start stops
    what it started), stopped in reverse; their routers, and their checks named
    `<service>.<check>`."""
    life = Lifecycle(services)

    async def start() -> None:
        try:
            await life.start()
        except BaseException:
            await life.stop()
            raise

    routers = [router for service in services for router in service.routers()]
    checks = {f"{service.name}.{k}": v for service in services for k, v in service.checks().items()}
    return Component(name, start, life.stop, routers, checks)


def judge(base: IngestSettings, data_dir: Path, secret: Callable[[str], str],
          demo_speed: float | None = None) -> Component:
    from lookout.judge.service import JudgeService
    from lookout.judge.settings import JudgeSettings

    services: list[Service] = []
    extra = {}
    if demo_speed is not None and not JudgeSettings().judge_base_url:
        # The demo's own evaluator (relevance as MiniLM cosine, named so in every score),
        # unless LOOKOUT_JUDGE_BASE_URL points the judge at a real model.
        from .demo_evaluator import DemoEvaluator

        evaluator = DemoEvaluator()
        services.append(evaluator)
        extra = evaluator.judge_settings()
    settings = _settings(JudgeSettings, base, judge_sampling_secret=secret("judge-sampling-secret"),
                         review_signing_secret=secret("review-signing-secret"), **extra)
    services.append(JudgeService(settings, session=Session.connect(settings)))
    return of_services("judge", services)


def drift(base: IngestSettings, data_dir: Path, secret: Callable[[str], str],
          demo_speed: float | None = None) -> Component:
    from lookout.drift.service import DriftService
    from lookout.drift.settings import DriftSettings

    # The service in the one shape: its own Session, key store, routers and checks.
    return Component.of(DriftService(_settings(DriftSettings, base)))


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
    return Component.of(RetrainService(settings))


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
    # The overview's page owns / here.
    return Component.of(FeedbackService(settings, serve_root=False))


def alerts(base: IngestSettings, data_dir: Path, secret: Callable[[str], str],
           demo_speed: float | None = None) -> Component:
    """The alert evaluator: the embedded mode has no Grafana, so the stack evaluates the
    same rules itself and notifies the receivers LOOKOUT_ALERT_* names."""
    from lookout.alerts.service import AlertService
    from lookout.alerts.settings import AlertSettings

    public = AlertSettings().alert_public_url or f"http://{base.http_host}:{base.http_port}"
    settings = _settings(AlertSettings, base, alert_public_url=public)
    service = AlertService(settings, Session.connect(settings))
    return Component("alerts", service.start, service.stop, list(service.routers()),
                     {f"alerts.{k}": v for k, v in service.checks().items()})


# Started in this order after ingest and the sink, stopped in reverse.
Builder = Callable[[IngestSettings, Path, Callable[[str], str], float | None], Component]
BUILDERS: list[Builder] = [judge, drift, feedback, retrain, alerts]
