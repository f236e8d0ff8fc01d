"""Stream caps are per app: one app sending thousands of model names fills only its own
share of streams, its extra events are counted per app and skipped, and every other app's
drift goes on (real broker, chdb, MiniLM)."""

from __future__ import annotations

from datetime import timedelta

from test_service import EVERY, REF, T0, Results, Traffic, api, drift_settings, eventually, produce

from lookout.core import ids
from lookout.core.events import LlmCall
from lookout.drift import DriftService

FLOOD, PER_APP, TOTAL = 2000, 20, 100


def flood(app: str, n: int) -> list[LlmCall]:
    """One call per random-looking model name: n streams' worth of traffic."""
    return [LlmCall(event_id=ids.uuid7(int((T0 + timedelta(milliseconds=i)).timestamp() * 1000)),
                    ts=T0 + timedelta(milliseconds=i), app_id=app, model=f"m-{i:05x}-{(i * 7919) % 65521:04x}",
                    prompt=f"question {i}", output=f"answer {i}")
            for i in range(n)]


async def test_one_app_flooding_model_names_does_not_blind_another_apps_drift(kafka_broker, settings_for, encoder,
                                                                               tokenizer):
    s = drift_settings(settings_for(kafka_broker), drift_max_streams_per_app=PER_APP, drift_max_streams=TOTAL)
    service = DriftService(s, encoder=encoder, tokenizer=tokenizer)
    await service.start()
    try:
        # The flood first and all of it consumed: under one global cap (TOTAL < FLOOD) it
        # would hold every slot before app-b's first event arrives.
        await produce(s, flood("app-a", FLOOD))
        await eventually(lambda: service.over_limit["app-a"] == FLOOD - PER_APP)
        traffic = Traffic(app="app-b", model="m1")
        await produce(s, traffic.calls("cooking", REF + 2 * EVERY))
        async with Results(s) as results:
            records = await results.until(
                lambda rs: any(r.app_id == "app-b" and r.details["window_index"] >= 1 for r in rs))
        async with api(service) as http:  # LOOKOUT_DRIFT_AUTH=false: no key needed
            streams = (await http.get("/v1/drift/streams")).json()
    finally:
        await service.stop()

    assert {r.model for r in records if r.app_id == "app-b"} == {"m1"}
    per_app = {}
    for st in streams["streams"]:
        per_app[st["app_id"]] = per_app.get(st["app_id"], 0) + 1
    assert per_app == {"app-a": PER_APP, "app-b": 1}
    assert streams["over_stream_limit"] == {"app-a": FLOOD - PER_APP}

    # A restart brings the same streams back, within the caps.
    again = DriftService(s, encoder=encoder, tokenizer=tokenizer)
    await again.start()
    try:
        restored = {k.app_id for k in again.states}
        assert restored == {"app-a", "app-b"} and len(again.states) == PER_APP + 1
    finally:
        await again.stop()


async def test_streams_stored_past_a_lowered_cap_are_not_restored(kafka_broker, settings_for, encoder, tokenizer):
    s = drift_settings(settings_for(kafka_broker), drift_max_streams_per_app=10)
    service = DriftService(s, encoder=encoder, tokenizer=tokenizer)
    await service.start()
    try:
        await produce(s, flood("app-a", 10) + Traffic(app="app-b").calls("cooking", 5))
        await eventually(lambda: len(service.states) == 11)
    finally:
        await service.stop()
    lowered = DriftService(s.model_copy(update={"drift_max_streams_per_app": 4}), encoder=encoder,
                           tokenizer=tokenizer)
    await lowered.start()
    try:
        assert sorted(k.app_id for k in lowered.states) == ["app-a"] * 4 + ["app-b"]
    finally:
        await lowered.stop()
