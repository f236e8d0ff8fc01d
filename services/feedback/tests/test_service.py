"""The service as a process (`python -m lookout.feedback`) and as a router mounted in
another app (the embedded stack's way)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
from fastapi import FastAPI

from lookout.feedback.app import FeedbackService
from lookout.feedback.settings import FeedbackSettings
from lookout.testing.brokers import free_port


def test_python_m_lookout_feedback_serves_ops_and_the_review_page(tansu_broker, tmp_path):
    port = free_port()
    env = {**os.environ, "LOOKOUT_KAFKA_BOOTSTRAP": tansu_broker.bootstrap, "LOOKOUT_KAFKA_IDEMPOTENCE": "off",
           "LOOKOUT_TOPIC_PREFIX": f"m{port}.", "LOOKOUT_CLICKHOUSE_DSN": f"chdb://{tmp_path}/chdb",
           "LOOKOUT_HTTP_HOST": "127.0.0.1", "LOOKOUT_HTTP_PORT": str(port), "LOOKOUT_KAFKA_TOPIC_PARTITIONS": "1",
           "LOOKOUT_PII_SECRET": "pii-secret-0123456789", "LOOKOUT_REVIEW_SIGNING_SECRET": "signing-secret-0123456789"}
    proc = subprocess.Popen([sys.executable, "-m", "lookout.feedback"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while True:
                assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "service did not become ready"
                time.sleep(0.3)
            assert http.get("/healthz").json() == {"status": "ok"}
            assert http.get("/metrics").status_code == 200
            page = http.get("/review")
            assert page.status_code == 200 and "review.js" in page.text
            assert http.get("/review/static/review.js").status_code == 200
            assert http.get("/review/static/nope.js").json()["error"]["status"] == 404
            paths = http.get("/openapi.json").json()["paths"]
            assert {"/v1/feedback", "/v1/feedback/token", "/review/api/next", "/v1/datasets/export"} <= set(paths)
            r = http.post("/v1/feedback", json={"event_id": "00000000-0000-0000-0000-000000000000", "thumbs": 1})
            assert r.status_code == 401 and r.json()["error"]["status"] == 401
    finally:
        proc.terminate()
        proc.wait(30)


def test_router_keeps_its_error_format_when_mounted_in_an_app_without_its_handlers():
    service = FeedbackService(FeedbackSettings())
    app = FastAPI()
    for router in service.routers():
        app.include_router(router)
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        r = client.get("/review/static/missing.css")
        assert r.status_code == 404 and r.json() == {"error": {"status": 404, "message": "no asset missing.css"}}
