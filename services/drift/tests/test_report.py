"""GET /v1/drift/{result_id}/report: an Evidently HTML page for a stored drift result,
computed on exactly the reference and window the result's test compared. Real broker,
real drift worker and MiniLM, real sink storing llm.drift into chdb."""

import asyncio
import random
import time
import uuid

import pytest
from corpus import answer, questions
from test_service import EVERY, REF, T0, Traffic, api, produce

from lookout.core import topics
from lookout.core.auth import ApiKeyStore
from lookout.core.events import DriftResult
from lookout.core.session import Session
from lookout.drift import DriftService, DriftSettings
from lookout.sink.rows import TABLES

WINDOW = 60
EMBEDDING_SECTION = "Drift in embeddings 'prompt'"


def drift_settings(common, **extra) -> DriftSettings:
    values = {k: v for k, v in common.model_dump().items() if k in DriftSettings.model_fields}
    values.update(
        drift_reference_size=REF, drift_window_size=WINDOW, drift_test_every_events=EVERY,
        drift_min_window_events=EVERY, drift_batch_events=300,
        drift_lag_budget_s=1e9,  # no sampling: exact windows
    )
    values.update(extra)
    return DriftSettings(**values)


async def stored_result(service: DriftService, match, limit_s: float = 90) -> dict:
    """The first result the sink stored in drift_results that matches."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(service.store.list_results, "shop", "m1", None, None, 1000)
        found = [r for r in rows if match(r)]
        if found:
            return found[0]
        await asyncio.sleep(0.3)
    raise AssertionError("no matching drift result was stored")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.serial
async def test_a_drifted_result_has_an_evidently_report_of_its_own_window(kafka_ingest_stack, encoder, tokenizer):
    s = drift_settings(kafka_ingest_stack.settings)
    traffic = Traffic(seed=11)
    # Windows of 60 tested every 30: window 1 is half tax, window 2 all tax. The sequential
    # evidence crosses its threshold near the 55th tax call, barely (log10 10.05 against 9.95
    # on one run, short of it on another), so two more windows of tax give it a clear margin.
    await produce(s, traffic.calls("cooking", REF + EVERY) + traffic.calls("tax", 4 * EVERY))
    service = DriftService(s, encoder=encoder, tokenizer=tokenizer)
    await service.start()
    try:
        drifted = await stored_result(service, lambda r: r["signal"] == "prompt_embedding" and r["drifted"])
        keys = service.keys
        assert keys is not None
        _, reader = keys.create("shop", ["read"])
        _, other_app = keys.create("bank", ["read"])
        _, ingest_only = keys.create("shop", ["ingest"])
        url = f"/v1/drift/{drifted['result_id']}/report"

        async with api(service) as http:
            assert (await http.get(url)).status_code == 401
            assert (await http.get(url, headers=bearer(other_app))).status_code == 403
            assert (await http.get(url, headers=bearer(ingest_only))).status_code == 403

            started = time.perf_counter()
            first = await http.get(url, headers=bearer(reader))
            built_s = time.perf_counter() - started
            started = time.perf_counter()
            again = await http.get(url, headers=bearer(reader))
            cached_s = time.perf_counter() - started
    finally:
        await service.stop()
    print(f"report of {drifted['result_id']}: built in {built_s:.2f} s, cached {cached_s * 1000:.0f} ms")

    assert first.status_code == 200, first.text[:500]
    assert first.headers["content-type"].startswith("text/html")
    page = first.text
    assert "shop/m1" in page and "prompt_embedding" in page and drifted["reference_id"] in page
    assert EMBEDDING_SECTION in page and "Drift in embeddings 'response'" in page
    assert "prompt_tokens" in page and "empty_or_refused" in page
    # Both sides exactly as the test compared them: the sizes the result recorded.
    assert f"reference {REF}, current {WINDOW}" in page
    # Self-contained: Evidently's JS is inlined, nothing loads from a CDN.
    assert "<script src=" not in page
    assert again.text == page


async def test_a_window_against_an_uploaded_reference_is_reported_against_that_upload(
    kafka_ingest_stack, encoder, tokenizer
):
    s = drift_settings(kafka_ingest_stack.settings)
    traffic = Traffic(seed=12)
    service = DriftService(s, encoder=encoder, tokenizer=tokenizer)
    await service.start()
    try:
        assert service.keys is not None
        _, admin = service.keys.create("shop", ["admin"])
        rnd = random.Random(3)
        upload = {"app_id": "shop", "model": "m1", "policy": "pinned",
                  "samples": [{"prompt": q, "response": answer("travel", rnd)} for q in questions("travel", 40)]}
        async with api(service) as http:
            pinned = await http.post("/v1/drift/reference", json=upload, headers=bearer(admin))
            assert pinned.status_code == 200, pinned.text
            pinned_ref = pinned.json()["reference_id"]
            await produce(s, traffic.calls("cooking", EVERY))
            result = await stored_result(service, lambda r: r["reference_id"] == pinned_ref
                                         and r["signal"] == "prompt_embedding")
            report = await http.get(f"/v1/drift/{result['result_id']}/report", headers=bearer(admin))
    finally:
        await service.stop()
    assert report.status_code == 200, report.text[:500]
    assert pinned_ref in report.text and "(upload:upload-" in report.text
    assert "reference 40, current 30" in report.text and EMBEDDING_SECTION in report.text


async def test_unknown_malformed_and_unrecorded_results_get_no_report(ch, ch_settings):
    # Never started: its routes over a session on the store, with a key store on the same client.
    service = DriftService(drift_settings(ch_settings), session=Session.of(ch))
    keys = service.keys = ApiKeyStore(ch)
    _, reader = keys.create("*", ["read"])
    # A result stored the way the sink stores llm.drift, from before drift recorded which
    # events each window compared: there is no window to rebuild.
    old = DriftResult(
        result_id=uuid.uuid4(), ts=T0, app_id="shop", model="m1", window_start=T0, window_end=T0,
        signal="prompt_embedding", method="mmd_rbf", statistic=0.4, p_value=0.001, threshold=None, drifted=True,
        reference_size=500, current_size=500, reference_id="first_n:0123456789ab", examples=[],
        details={"window_index": 7},
    )
    spec = TABLES[topics.DRIFT]
    row = spec.to_row(old)
    ch.insert(spec.table, [list(row.values())], column_names=list(row))

    async with api(service) as http:
        unknown = uuid.uuid4()
        missing = await http.get(f"/v1/drift/{unknown}/report", headers=bearer(reader))
        assert missing.status_code == 404 and str(unknown) in missing.json()["error"]["message"]
        malformed = await http.get("/v1/drift/not-a-uuid/report", headers=bearer(reader))
        assert malformed.status_code == 422 and "result_id" in malformed.text
        unrecorded = await http.get(f"/v1/drift/{old.result_id}/report", headers=bearer(reader))
    assert unrecorded.status_code == 409
    assert "no recorded window" in unrecorded.json()["error"]["message"]
