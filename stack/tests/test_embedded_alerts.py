"""`lookout up` evaluates the alert rules itself (the embedded mode has no Grafana): its
API answers on the stack's port with the receivers the LOOKOUT_ALERT_* environment names,
its readiness is part of /readyz and its series are on /metrics."""

from __future__ import annotations

import signal

import httpx

from lookout.dashboards import alerts
from lookout.testing.brokers import free_port
from lookout.testing.embedded import start_lookout_up as start
from lookout.testing.embedded import wait_ready


def test_lookout_up_runs_the_alert_evaluator_with_the_configured_receivers(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKOUT_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/alerts")
    monkeypatch.setenv("LOOKOUT_ALERT_WEBHOOK_SECRET", "embedded-webhook-secret-0123")
    monkeypatch.setenv("LOOKOUT_ALERT_ERROR_RATE", "0.2")
    port = free_port()
    proc = start(tmp_path, port)
    try:
        wait_ready(proc, port)
        base = f"http://127.0.0.1:{port}"
        key = (tmp_path / "dev-api-key").read_text().strip()
        rules = httpx.get(f"{base}/v1/alerts/rules", headers={"Authorization": f"Bearer {key}"}).json()
        assert [r["uid"] for r in rules["rules"]] == [r.uid for r in alerts.RULES]
        assert rules["receivers"] == ["webhook"]
        # One threshold for both modes: the variable Grafana's provisioning is generated from.
        assert next(r for r in rules["rules"] if r["uid"] == "lookout-error-rate")["threshold"] == 0.2
        ready = httpx.get(f"{base}/readyz").json()
        assert ready["ready"] is True
        assert httpx.get(f"{base}/v1/alerts", headers={"Authorization": f"Bearer {key}"}).json() == {"alerts": []}
        assert "lookout_alert_instances" in httpx.get(f"{base}/metrics").text
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert f"alerts: {len(alerts.RULES)} rules" in out
