"""An admin approves a retrain run from the review UI: the feedback service (admin session
+ CSRF) produces the decision to llm.retrain.status and the retrain-trigger applies it
through the same path as its own API: nothing launches before, the job runs after. Both
services on one real broker and store."""

from __future__ import annotations

import time

import httpx
import pytest

from .conftest import serve_feedback
from .test_closed_loop import THUMBS

ADMIN = ("admin", "admin-password-1")


@pytest.fixture
def review_url(harness):
    """A feedback service (review UI API) on the harness's broker, store and loop."""
    yield from serve_feedback(harness, review_admin_user=ADMIN[0], review_admin_password=ADMIN[1],
                              review_audit_rate=0.0)


def _wait_listed(http: httpx.Client, run_id, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = http.get("/review/api/admin/retrain/runs").json()["runs"]
        if any(r["run_id"] == str(run_id) for r in runs):
            return runs
        time.sleep(0.25)
    raise AssertionError(f"run {run_id} not listed as awaiting approval")


def test_an_admin_approves_a_run_in_the_review_ui_and_it_launches(harness, review_url):
    h = harness
    h.start(h.settings(THUMBS.format(approval="true")))
    calls = h.calls(12)
    h.reviews(calls[:6])
    h.thumbs(calls, [True] * 12)
    h.wait_status("requested")
    time.sleep(1)
    ((run_id, seen),) = h.statuses().items()
    assert seen == ["requested"]  # nothing launched

    with httpx.Client(base_url=review_url, timeout=30) as http:
        r = http.post("/review/api/login", json={"username": ADMIN[0], "password": ADMIN[1]})
        assert r.status_code == 200, r.text
        csrf = r.json()["csrf"]
        (listed,) = _wait_listed(http, run_id)
        assert listed["app_id"] == "shop" and listed["rule"] == "quality/thumbs"
        assert listed["dataset_counts"]["sft"] == 6 and listed["evidence"]["require_approval"] is True
        # Session without the CSRF token, and a non-admin: refused, nothing produced.
        assert http.post(f"/review/api/admin/retrain/{run_id}/approve").status_code == 403
        r = http.post(f"/review/api/admin/retrain/{run_id}/approve", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert r.json() == {"run_id": str(run_id), "status": "approved"}
        runs = h.wait_status("succeeded", timeout=120)
        assert runs[run_id][:3] == ["requested", "approved", "launched"] and runs[run_id][-1] == "succeeded"
        # Decided: no longer listed, and a second decision is refused.
        assert http.get("/review/api/admin/retrain/runs").json()["runs"] == []
        again = http.post(f"/review/api/admin/retrain/{run_id}/reject", headers={"X-CSRF-Token": csrf})
        assert again.status_code == 404
    message = h.stack.client.query(
        "SELECT message FROM retrain_runs FINAL WHERE run_id = {r:UUID} AND status = 'approved'",
        parameters={"r": run_id}).result_rows
    assert message and all("admin" in m for (m,) in message)


def test_an_admin_rejects_a_run_in_the_review_ui_and_it_never_launches(harness, review_url):
    h = harness
    service = h.start(h.settings(THUMBS.format(approval="true")))
    calls = h.calls(12)
    h.reviews(calls[:3])
    h.thumbs(calls, [True] * 12)
    h.wait_status("requested")
    ((run_id, _),) = h.statuses().items()
    with httpx.Client(base_url=review_url, timeout=30) as http:
        r = http.post("/review/api/login", json={"username": ADMIN[0], "password": ADMIN[1]})
        _wait_listed(http, run_id)
        r = http.post(f"/review/api/admin/retrain/{run_id}/reject", headers={"X-CSRF-Token": r.json()["csrf"]})
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while run_id in service.runs and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run_id not in service.runs  # the trigger applied the rejection
    time.sleep(1)
    assert h.statuses()[run_id] == ["requested", "rejected"]


def test_an_approval_made_while_the_trigger_is_down_launches_when_it_is_back(harness, review_url):
    h = harness
    settings = h.settings(THUMBS.format(approval="true"))
    service = h.start(settings)
    calls = h.calls(12)
    h.reviews(calls[:6])
    h.thumbs(calls, [True] * 12)
    h.wait_status("requested")
    ((run_id, _),) = h.statuses().items()
    h.stop(service)
    with httpx.Client(base_url=review_url, timeout=30) as http:
        r = http.post("/review/api/login", json={"username": ADMIN[0], "password": ADMIN[1]})
        _wait_listed(http, run_id)
        r = http.post(f"/review/api/admin/retrain/{run_id}/approve", headers={"X-CSRF-Token": r.json()["csrf"]})
        assert r.status_code == 200, r.text
    h.wait_status("approved")  # stored by the sink: the restarted trigger restores the run as approved
    h.start(settings)
    runs = h.wait_status("succeeded", timeout=120)
    assert runs[run_id][:3] == ["requested", "approved", "launched"] and runs[run_id][-1] == "succeeded"
