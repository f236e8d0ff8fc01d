"""The retrain trigger in the one service shape: every HTTP error in the envelope, evidence
taken from what the records say (a vote names its call's model, so no call is read back
and nothing waits for the sink), and what it cannot use dead-lettered while the rest of
its batch counts. Real broker, sink and chdb."""

from __future__ import annotations

import base64
import time
import uuid
from datetime import timedelta

from lookout.core import clickhouse, topics
from lookout.core.events import DeadLetter, Feedback, LlmCall, Message
from lookout.core.ids import uuid7
from lookout.core.serving import Lifecycle, service_app
from lookout.core.session import Session
from lookout.retrain_trigger.service import RetrainService
from lookout.testing.envelope import assert_error_envelopes
from lookout.testing.kafka_io import read_all
from lookout.testing.sessions import RecordingClient

from .test_closed_loop import THUMBS


def test_every_http_error_of_the_retrain_trigger_is_in_the_envelope(harness):
    h = harness
    service = h.start(h.settings(THUMBS.format(approval="true")))
    _, weak = h.stack.keys.create("another-app", ["read"], name="weak")
    app = service_app(service, lifecycle=h.services[service])
    assert_error_envelopes(app, strong_key=h.stack.api_key, weak_key=weak)


def test_votes_count_in_the_stream_their_record_names_and_no_call_is_read_back(harness):
    h = harness
    settings = h.settings(THUMBS.format(approval="true"))
    recorder = RecordingClient(clickhouse.connect(settings))
    service = RetrainService(settings, Session(recorder))
    life = Lifecycle([service])
    h.stack._run(life.start())
    try:
        recorder.clear()  # start-up (migrations) names every table
        # Calls that were never stored: each vote says which app and model its call had.
        calls = [LlmCall(event_id=uuid7(), ts=h.t0 + timedelta(seconds=i), app_id="shop", model="m1",
                         model_version="v1", input=[Message(role="user", content=f"q{i}")], output="a")
                 for i in range(3)]
        h.thumbs(calls, [True, False, True])
        # One vote that does not name its call's model, and one record that is not JSON.
        anonymous = Feedback(feedback_id=uuid7(), event_id=uuid.uuid4(), ts=h.t0, app_id="shop",
                             source="end_user", author="u2", thumbs=-1)
        h.produce(topics.FEEDBACK, [anonymous])
        h.stack._run(h.producer.send_and_wait(topics.resolve(h.stack.settings.topic_prefix, topics.FEEDBACK),
                                              b"{not json"))
        deadline = time.monotonic() + 60
        while service.worker.stats.consumed < 5:
            assert time.monotonic() < deadline, f"consumed {service.worker.stats.consumed} of 5 records"
            time.sleep(0.1)

        window = service.engine.windows[("shop", "m1")]
        assert sorted(o.value for o in window.items if o.kind == "thumbs") == [0.0, 1.0, 1.0]
        assert h.stack.wait_for("SELECT count() FROM retrain_observations FINAL WHERE kind = 'thumbs' "
                                "AND app_id = 'shop' AND model = 'm1'", 3) == 3
        assert recorder.touching("retrain_observations")  # the seam saw the trigger's writes...
        assert recorder.touching("llm_calls") == []  # ...and not one look at a call

        dead = [DeadLetter.from_bytes(r.value) for r in h.stack._run(read_all(h.stack.settings, topics.DLQ))]
        mine = {"model" if "without its call's model" in d.error else "json" if "JSON" in d.error else d.error: d
                for d in dead if d.service == "retrain-trigger"}
        assert set(mine) == {"model", "json"}, [d.error for d in mine.values()]
        assert Feedback.from_bytes(base64.b64decode(mine["model"].payload_b64)) == anonymous
    finally:
        h.stack._run(life.stop())
        recorder.close()
