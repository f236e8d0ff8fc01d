"""The embedded stack: a Kafka-protocol broker as a child process (Apache Kafka, durable,
where Java 17+ is there; else Tansu, in memory; see broker.py), chdb under the data dir,
and every service in this one process and asyncio loop, all HTTP APIs on one port.

chdb locks a path to one process, so every service runs in this one and opens its clients
on the one path; the services are the list in components.py, started in order, stopped in
reverse, their routers on the one app and their checks in its /readyz.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from lookout.broker import Broker
from lookout.core import clickhouse, kafka, migrations
from lookout.core.api_errors import install_error_handlers
from lookout.core.auth import ApiKeyStore
from lookout.core.logs import step
from lookout.core.ops import ops_router
from lookout.core.serving import Lifecycle, install_middleware
from lookout.core.tasks import cancel_and_wait
from lookout.ingest.settings import IngestSettings

from . import components
from .broker import IN_MEMORY, BrokerKeeper, Choice, EmbeddedSettings, choose
from .components import Layout
from .lock import lock_data_dir
from .overview import review_sessions
from .overview import router as overview_router

log = logging.getLogger(__name__)

ALL_SCOPES = ["ingest", "read", "feedback", "review", "admin"]


@dataclass
class EmbeddedStack:
    data_dir: Path
    port: int = 8000
    host: str = "127.0.0.1"
    kafka_port: int = 0
    broker: str | None = None  # auto, kafka, tansu or host:port,...; None: LOOKOUT_EMBEDDED_BROKER
    demo: bool = False  # the demo's retrain policy and tiny base model, and (demo_traffic) its traffic
    demo_speed: float = 1.0
    demo_traffic: bool = True  # False: the stack is set up for the demo, the simulator runs elsewhere
    dev_key: str | None = None
    dev_key_note: str | None = None  # why there is no dev_key (it was revoked)
    choice: Choice | None = None
    _keeper: BrokerKeeper | None = None
    _lock_fd: int | None = None
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def settings(self, bootstrap: str) -> IngestSettings:
        # Explicit LOOKOUT_* variables still win for anything not fixed by the embedded layout.
        broker = self.choice.broker if self.choice else None
        # Idempotent producers on Kafka (a start that cannot make one fails, it does not quietly
        # go without); off on Tansu, which refuses them; an external cluster's as configured.
        idempotence: dict[str, Any] = {} if broker is None else {
            "kafka_idempotence": "on" if broker.supports_idempotence else "off"}
        return IngestSettings(
            kafka_bootstrap=bootstrap,
            **idempotence,
            clickhouse_dsn=f"chdb://{(self.data_dir / 'chdb').resolve()}",
            http_host=self.host,
            http_port=self.port,
            pii_secret=self.secret("pii-secret"),
            # A local broker: a shorter session lets each service join its group in ~3 s
            # instead of ~5 s (Tansu holds a joining member for half the session timeout), and
            # after a kill, lets the dead process's members go sooner. 6 s is Kafka's floor.
            kafka_session_timeout_ms=6_000,
        )

    @property
    def embedded_broker(self) -> Broker | None:
        return self.choice.broker if self.choice else None

    def broker_summary(self) -> str:
        """One line for the start banner: which broker, and what that means for the data."""
        if self.choice is None:
            return "no broker"
        broker = self.choice.broker
        if broker is None:
            return f"external Kafka cluster at {self.choice.bootstrap}"
        if broker.durable:
            return f"{broker.describe()} (durable: accepted events survive a crash)"
        why = f"\n    Apache Kafka not used: {self.choice.fallback}" if self.choice.fallback else ""
        return f"{broker.describe()}\n    WARNING: {IN_MEMORY}.{why}"

    def _start_broker(self) -> str:
        """Take the data dir, end a stale broker of it, launch ours; its bootstrap servers.
        The broker starts while ClickHouse opens and migrates (wait_broker joins them)."""
        self._lock_fd = lock_data_dir(self.data_dir)
        chosen: dict[str, Any] = {"embedded_broker": self.broker} if self.broker else {}
        settings = EmbeddedSettings(**chosen)
        self.choice = choose(settings, self.data_dir, self.kafka_port, progress=lambda line: print(line, flush=True))
        broker = self.choice.broker
        if broker is None:
            assert self.choice.bootstrap is not None
            return self.choice.bootstrap
        if not broker.durable:
            log.warning("%s.%s", IN_MEMORY, f" Apache Kafka not used: {self.choice.fallback}" if self.choice.fallback
                        else "")
        broker.launch()
        return broker.bootstrap

    def _wait_broker(self) -> None:
        broker = self.embedded_broker
        if broker is None:
            return
        try:
            broker.wait_ready()
        except RuntimeError as exc:  # it exited before listening: once more (Kafka: without its class archive)
            log.warning("%s; trying once more", str(exc).splitlines()[0])
            broker.launch()
            broker.wait_ready()

    def secret(self, name: str) -> str:
        """A random secret kept in the data dir (mode 0600), made on first start, so
        pseudonyms and hash tokens stay stable across restarts."""
        path = self.data_dir / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def ensure_dev_key(self, keys: ApiKeyStore) -> str | None:
        """On first start, a development key with every scope; only its hash is stored and
        the key itself goes to <data-dir>/dev-api-key (mode 0600). Later starts reuse it
        (stored again if the store was wiped). A revoked one stays revoked: None, and
        `dev_key_note` says so and how to get a new one; a new key is never made silently."""
        path = self.data_dir / "dev-api-key"
        if path.exists():
            try:
                key = keys.import_key(path.read_text().strip(), "*", ALL_SCOPES, name="embedded development key")
            except ValueError as exc:
                raise ValueError(f"{path} does not hold a usable API key ({exc}); delete it to make a new one") \
                    from None
            if key.revoked:
                self.dev_key_note = (
                    f"the development key {key.key_id} in {path} was revoked, so none is in use; to make a new one, "
                    f"stop Lookout and delete {path} (a new key is written there on the next start), or run "
                    f"`lookout keys create --data-dir {self.data_dir} --app '*' --scope admin`"
                )
                log.warning(self.dev_key_note)
                return None
            return path.read_text().strip()
        _, key = keys.create("*", ALL_SCOPES, name="embedded development key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        os.chmod(path, 0o600)
        return key

    def build(self) -> FastAPI:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with step("starting the Kafka broker"):
            settings = self.settings(self._start_broker())
        with step(f"opening ClickHouse (chdb) at {self.data_dir / 'chdb'} and applying migrations"):
            client = clickhouse.connect(settings)
            migrations.apply(client, settings.retention_days)
        self.dev_key = self.ensure_dev_key(ApiKeyStore(client))
        if self.dev_key is None and self.demo and self.demo_traffic:
            raise ValueError(f"the demo's traffic needs the development key: {self.dev_key_note}")
        self._wait_broker()
        broker = self.embedded_broker
        if broker is not None:
            async def after_restart() -> None:
                if not broker.durable:  # Tansu comes back empty
                    await kafka.ensure_topics(settings)

            self._keeper = BrokerKeeper(broker, self.choice.fallback if self.choice else "", after_restart)
        layout = Layout(settings, client, self.data_dir, self.secret, self.demo_speed if self.demo else None)
        services = components.services(layout)
        # Started at once (each consumer's group join and each model's load overlap: `lookout up`
        # is up in about half the time), stopped in reverse; a failed start stops them all.
        life = Lifecycle(services, announce=True, together=True)

        @asynccontextmanager
        async def lifespan(_: FastAPI):
            try:
                if self._keeper is not None:
                    self._keeper.start()
                # A service's start loads its models (judge: toxicity; drift: the encoder).
                await life.start()
                if self.demo and self.demo_traffic:
                    from .demo import run_demo

                    assert self.dev_key is not None  # build() refuses the demo's traffic without it

                    reviewer = ("admin", self.secret("review-admin-password"))
                    self._tasks.append(asyncio.create_task(run_demo(
                        f"http://{self.host}:{self.port}", self.dev_key, self.demo_speed, reviewer=reviewer,
                        await_retrain=True), name="lookout-demo"))
                log.info("Lookout is up in %.1fs on http://%s:%d", time.monotonic() - began, self.host, self.port)
                yield
            finally:
                await cancel_and_wait(*self._tasks)
                self._tasks.clear()
                await life.stop()
                if self._keeper is not None:
                    await self._keeper.stop()
                self.stop_broker()

        app = FastAPI(title="Lookout (embedded)", lifespan=lifespan)
        install_error_handlers(app)
        # Each check named <service>.<check>, as serving names them for several services.
        checks = {f"{service.name}.{name}": check for service in services for name, check in service.checks().items()}
        if self._keeper is not None:
            checks["broker"] = self._keeper.check
        for service in services:
            for router in service.routers():
                app.include_router(router)
        app.include_router(ops_router(checks, self.readiness_details))
        overview_client = clickhouse.connect(settings)
        # The request-size limit with ingest's larger ones for its batch routes, then (outermost)
        # the request metrics: as every service's own app has them.
        install_middleware(app, services)
        app.include_router(overview_router(lambda: overview_client, keys=ApiKeyStore(overview_client),
                                           sessions=review_sessions(clickhouse.connect(settings)),
                                           bound_host=self.host))
        return app

    def readiness_details(self) -> dict:
        if self._keeper is not None:
            return {"broker": self._keeper.details()}
        bootstrap = self.choice.bootstrap if self.choice else None
        return {"broker": {"kind": "external", "bootstrap": bootstrap, "about": self.broker_summary()}}

    def stop_broker(self) -> None:
        """Stop the embedded broker cleanly (Kafka closes its log); safe to call again."""
        broker = self.embedded_broker
        if broker is not None:
            broker.stop()


