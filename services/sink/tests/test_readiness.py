"""The standalone sink's /readyz, as `python -m lookout.sink` serves it (service_app): ready
only while its consumer runs and ClickHouse answers; a lost ClickHouse is a 503 that names
the `clickhouse` check and says why, so an orchestrator stops routing to it and an
operator sees what broke."""

from __future__ import annotations

import asyncio
from typing import cast

import httpx
from clickhouse_connect.driver.client import Client

from lookout.core.serving import Lifecycle, service_app
from lookout.sink.service import SinkService
from lookout.sink.settings import SinkSettings


async def _ready(http: httpx.AsyncClient, timeout_s: float = 60) -> httpx.Response:
    for _ in range(int(timeout_s * 10)):
        r = await http.get("/readyz")
        if r.status_code == 200:
            return r
        await asyncio.sleep(0.1)
    raise AssertionError(f"the sink never became ready: {r.json()}")


async def test_readyz_is_503_naming_clickhouse_once_the_sinks_clickhouse_connection_is_gone(
        kafka_broker, settings_for):
    # The sink opens its own ClickHouse connection (no session handed in), as its process does.
    sink = SinkService(SinkSettings(**settings_for(kafka_broker).model_dump()))
    life = Lifecycle([sink])
    app = service_app(sink, lifecycle=life)
    await life.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sink") as http:
            assert (await _ready(http)).json() == {"ready": True, "problems": {}}
            assert sink.session is not None
            with sink.session.locked() as client:
                cast(Client, client).close()  # the connection to ClickHouse is gone; the consumer still runs
            r = await http.get("/readyz")
            assert r.status_code == 503
            body = r.json()
            assert body["ready"] is False and set(body["problems"]) == {"clickhouse"}
            assert body["problems"]["clickhouse"].startswith("ClickHouse: ")
            assert "closed" in body["problems"]["clickhouse"]
            assert (await http.get("/healthz")).status_code == 200  # alive, just not ready
    finally:
        await life.stop()
