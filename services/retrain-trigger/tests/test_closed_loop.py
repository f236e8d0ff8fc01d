"""The closed loop on a real broker and store: quality drops -> a rule fires once ->
dataset snapshot -> the local launcher runs jobs/finetune on a tiny model on CPU ->
succeeded and a candidate version registered. With require_approval nothing launches
until an admin approves."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from lookout.retrain_trigger import versions

THUMBS = """
    version: 1
    policies:
      - name: quality
        match: {{app: shop, model: m1}}
        cooldown: 1h
        require_approval: {approval}
        rules:
          - {{name: thumbs, kind: thumbs_down_rate, window: 1h, min_samples: 10, fire_above: 0.3, clear_below: 0.1}}
"""


def test_quality_drop_fires_once_and_a_tiny_finetune_succeeds(harness_any):
    h = harness_any
    service = h.start(h.settings(THUMBS.format(approval="false")))
    calls = h.calls(24)
    h.reviews(calls[:12])
    h.thumbs(calls[:10], [False] * 10)
    h.thumbs(calls[10:24], [True] * 14, at=100)  # 14 of 24 down: well past 30%
    runs = h.wait_status("succeeded", timeout=120)
    assert len(runs) == 1, runs  # fired once, not again during the cooldown
    ((run_id, seen),) = runs.items()
    assert seen[:2] == ["requested", "launched"] and "running" in seen and seen[-1] == "succeeded"

    row = h.stack.client.query(
        "SELECT rule, evidence, dataset_uri, dataset_hash, dataset_counts FROM retrain_runs FINAL "
        "WHERE run_id = {r:UUID} AND status = 'requested'", parameters={"r": run_id}).result_rows[0]
    rule, evidence, uri, digest, counts = row
    evidence = json.loads(evidence)
    assert rule == "quality/thumbs" and evidence["rules"][0]["samples"] >= 10
    assert evidence["rules"][0]["statistic"] > 0.3 and evidence["require_approval"] is False
    assert counts == {"sft": 12, "preference": 12} and len(digest) == 64
    assert sum(1 for _ in open(Path(uri) / "sft.jsonl")) == 12

    # The job's outputs, and the candidate version it registered.
    metrics = json.loads((Path(h.tmp) / "runs" / str(run_id) / "metrics.json").read_text())
    assert metrics["dataset_hash"] == digest and metrics["rule"] == "quality/thumbs" and metrics["steps"] == 3
    deadline = time.monotonic() + 30
    while not versions.list_versions(service.session, "shop", "m1") and time.monotonic() < deadline:
        time.sleep(0.2)
    (version,) = versions.list_versions(service.session, "shop", "m1")
    assert version["model_version"] == f"m1+lora-{str(run_id)[:8]}" and version["status"] == "candidate"
    assert version["dataset_hash"] == digest and version["rule"] == "quality/thumbs"

    # The API lists the candidate and compares it with the version before it (no traffic yet).
    with httpx.Client(base_url=h.serve(service), timeout=30,
                      headers={"Authorization": f"Bearer {h.stack.api_key}"}) as http:
        listed = http.get("/v1/models/shop/m1/versions").json()
        assert [v["model_version"] for v in listed] == [version["model_version"]]
        r = http.get("/v1/models/shop/m1/compare", params={"candidate": version["model_version"]})
        assert r.status_code == 200, r.text
        cmp = r.json()
        assert cmp["baseline"] == "v1" and cmp["thumbs_down_rate"]["candidate"] == {"n": 0, "value": None}
        assert cmp["thumbs_down_rate"]["baseline"]["n"] == 24

    # More bad votes inside the cooldown: still one run.
    h.thumbs(h.calls(10), [True] * 10, at=300)
    time.sleep(2)
    assert len(h.statuses()) == 1


def test_require_approval_launches_only_after_an_admin_approves(harness):
    h = harness
    service = h.start(h.settings(THUMBS.format(approval="true")))
    url = h.serve(service)
    calls = h.calls(12)
    h.reviews(calls[:6])
    h.thumbs(calls, [True] * 12)
    runs = h.wait_status("requested")
    time.sleep(2)
    ((run_id, seen),) = h.statuses().items()
    assert seen == ["requested"]  # nothing launched

    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post(f"/v1/retrain/{run_id}/approve").status_code == 401
        _, reader = h.stack.keys.create("*", ["read"], name="reader")
        r = http.post(f"/v1/retrain/{run_id}/approve", headers={"Authorization": f"Bearer {reader}"})
        assert r.status_code == 403
        admin = {"Authorization": f"Bearer {h.stack.api_key}"}
        listed = http.get("/v1/retrain/runs", headers=admin).json()
        assert [x["run_id"] for x in listed] == [str(run_id)] and listed[0]["status"] == "requested"
        r = http.post(f"/v1/retrain/{run_id}/approve", json={"note": "looks right"}, headers=admin)
        assert r.status_code == 200, r.text
        again = http.post(f"/v1/retrain/{run_id}/approve", headers=admin)
        assert again.status_code in (404, 409)
    runs = h.wait_status("succeeded", timeout=120)
    assert runs[run_id][:3] == ["requested", "approved", "launched"] and runs[run_id][-1] == "succeeded"


def test_rejected_run_never_launches(harness):
    h = harness
    service = h.start(h.settings(THUMBS.format(approval="true")))
    calls = h.calls(12)
    h.reviews(calls[:3])
    h.thumbs(calls, [True] * 12)
    h.wait_status("requested")
    ((run_id, _),) = h.statuses().items()
    h.stack._run(service.decide(run_id, False, "test"))
    time.sleep(1)
    assert h.statuses()[run_id] == ["requested", "rejected"]
