"""The HTTP latency histogram every Lookout app carries (http_metrics.py): labelled by the
matched route's template and the status, so clients cannot mint series with their paths."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from lookout.core.body_limit import install_body_limit
from lookout.core.http_metrics import install_http_metrics
from lookout.core.settings import CommonSettings


def _count(method: str, route: str, status: str) -> float:
    value = REGISTRY.get_sample_value("lookout_http_request_duration_seconds_count",
                                      {"method": method, "route": route, "status": status})
    return value or 0.0


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/metrics-test/{event_id}")
    async def one(event_id: str) -> dict:
        return {"event_id": event_id}

    @app.post("/v1/metrics-test")
    async def post(body: dict) -> dict:
        return body

    @app.get("/v1/metrics-test-boom")
    async def boom() -> dict:
        raise RuntimeError("handler bug")

    install_body_limit(app, CommonSettings(max_request_body_bytes=1024))
    install_http_metrics(app)
    return app


async def test_requests_are_timed_by_route_template_and_status_never_by_raw_path():
    before = {k: _count(*k) for k in [("GET", "/v1/metrics-test/{event_id}", "200"), ("GET", "(unmatched)", "404"),
                                       ("POST", "(unrouted)", "413"), ("GET", "/v1/metrics-test-boom", "500"),
                                       ("OTHER", "(unmatched)", "405"), ("POST", "/v1/metrics-test", "422")]}
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for i in range(3):
            assert (await client.get(f"/v1/metrics-test/id-{i}")).status_code == 200
        assert (await client.get("/no/such/path/abc123")).status_code == 404
        assert (await client.post("/v1/metrics-test", content=b"{" * 4096)).status_code == 413
        assert (await client.post("/v1/metrics-test", content=b"[1]")).status_code == 422
        assert (await client.get("/v1/metrics-test-boom")).status_code == 500
        assert (await client.request("BREW", "/pot")).status_code in (404, 405)
    after = {k: _count(*k) for k in before}
    grew = {k: after[k] - before[k] for k in before}
    assert grew[("GET", "/v1/metrics-test/{event_id}", "200")] == 3
    assert grew[("GET", "(unmatched)", "404")] == 1
    assert grew[("POST", "(unrouted)", "413")] == 1  # refused by the body limit, before routing
    assert grew[("POST", "/v1/metrics-test", "422")] == 1
    assert grew[("GET", "/v1/metrics-test-boom", "500")] == 1  # a handler that raised is a 500
    assert sum(1 for k in ("OTHER",) for r in ("(unmatched)",) for s in ("404", "405") if _count(k, r, s)) >= 1
    routes = {s.labels["route"] for m in REGISTRY.collect() if m.name == "lookout_http_request_duration_seconds"
              for s in m.samples}
    assert not any("id-" in r or "abc123" in r or "/pot" in r for r in routes)
    assert REGISTRY.get_sample_value("lookout_http_requests_in_flight") == 0
