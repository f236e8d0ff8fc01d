"""Dataset export: SFT and preference JSONL match the reviews exactly, versioned by hash."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from lookout.feedback.datasets import DatasetFilters, export_dataset

from .conftest import SIGNING_SECRET


def _lines(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def test_export_matches_reviews_and_a_second_export_has_the_same_hash(kafka_feedback_stack, tmp_path: Path):
    stack = kafka_feedback_stack
    calls = stack.add_calls("shop", 4, output="orig")
    other_app = stack.add_calls("bank", 1, output="orig")
    stack.queue_tasks("shop", calls)
    stack.queue_tasks("bank", other_app)
    ordered = sorted(calls)  # equal priority and age bucket: the test reviews in whatever order comes
    stack.add_reviewer("eve", ["shop", "bank"])
    with stack.login("eve", "password-123") as http:
        for _ in range(5):
            task = http.post("/review/api/next", json={}).json()["task"]
            e = uuid.UUID(task["event_id"])
            if e == other_app[0]:
                body = {"rating": 5}
            else:
                i = ordered.index(e)
                body = [
                    {"rating": 5, "labels": ["correct"]},  # approved: SFT with the original
                    {"rating": 1, "corrected_output": "fixed", "labels": ["hallucination"]},  # SFT + preference
                    {"rating": 1},  # rejected without a correction: nothing
                    {"thumbs": 1},  # approved by thumbs: SFT
                ][i]
            r = http.post(f"/review/api/tasks/{e}/submit", json=body)
            assert r.status_code == 200, r.text
    stack.wait_rows("SELECT count() FROM feedback WHERE source = 'reviewer'", 5)

    def prompt(e):
        i = calls.index(e)
        return [{"role": "user", "content": f"question {i} of shop"}]

    out = tmp_path / "datasets"
    version = export_dataset(stack.client, DatasetFilters(app_id="shop"), out, SIGNING_SECRET)
    sft = _lines(Path(version.files["sft.jsonl"]).read_bytes())
    pref = _lines(Path(version.files["preference.jsonl"]).read_bytes())
    i = {e: calls.index(e) for e in calls}
    assert sft == [
        {"messages": prompt(ordered[0]), "completion": f"orig {i[ordered[0]]}", "event_id": str(ordered[0])},
        {"messages": prompt(ordered[1]), "completion": "fixed", "event_id": str(ordered[1])},
        {"messages": prompt(ordered[3]), "completion": f"orig {i[ordered[3]]}", "event_id": str(ordered[3])},
    ]
    assert pref == [{"messages": prompt(ordered[1]), "chosen": "fixed", "rejected": f"orig {i[ordered[1]]}",
                     "event_id": str(ordered[1])}]
    assert (version.sft_count, version.preference_count) == (3, 1)

    again = export_dataset(stack.client, DatasetFilters(app_id="shop"), out, SIGNING_SECRET)
    assert again.sha256 == version.sha256 and again.dataset_id == version.dataset_id
    stored = stack.client.query("SELECT sha256, sft_count, preference_count, filters FROM dataset_versions FINAL")
    assert stored.result_rows == [(version.sha256, 3, 1, DatasetFilters(app_id="shop").as_json())]

    labelled = export_dataset(stack.client, DatasetFilters(app_id="shop", label="hallucination"), out, SIGNING_SECRET)
    assert (labelled.sft_count, labelled.preference_count) == (1, 1)
    everything = export_dataset(stack.client, DatasetFilters(), out, SIGNING_SECRET)
    assert everything.sft_count == 4  # the bank call too

    # Download over HTTP: an API key with the review scope; one bound to another app gets its own app only.
    with stack.key_http() as http:
        r = http.get("/v1/datasets/export", params={"kind": "sft", "app_id": "shop"})
        assert r.status_code == 200 and r.headers["x-dataset-sha256"] == version.sha256
        assert _lines(r.content) == sft
        r = http.get("/v1/datasets/export", params={"kind": "preference", "app_id": "shop"})
        assert _lines(r.content) == pref
    _, bank_key = stack.ingest.keys.create("bank", ["review"])
    with stack.key_http(bank_key) as http:
        assert http.get("/v1/datasets/export", params={"app_id": "shop"}).status_code == 403
        assert [x["event_id"] for x in _lines(http.get("/v1/datasets/export").content)] == [str(other_app[0])]
        assert http.post("/v1/datasets").status_code == 403
