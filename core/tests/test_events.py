"""Wire schemas: strict where data enters from outside, tolerant where Kafka records are
read back, so services can be upgraded one at a time."""

import uuid

import orjson
import pytest
from pydantic import ValidationError

from lookout.core.events import LlmCall, Score, now_utc


def a_score(**extra) -> bytes:
    score = Score(schema="score/1", score_id=uuid.uuid4(), event_id=uuid.uuid4(), ts=now_utc(), app_id="shop",
                  model="m1", name="toxicity", value=0.1, source="model", evaluator="detoxify")
    return orjson.dumps({**orjson.loads(score.to_bytes()), **extra})


def test_a_record_from_a_newer_producer_with_an_added_field_is_read_not_rejected():
    score = Score.from_bytes(a_score(added_in_a_later_release="x"))
    assert score.name == "toxicity" and not hasattr(score, "added_in_a_later_release")


def test_a_record_missing_a_required_field_is_still_rejected():
    record = orjson.loads(a_score())
    del record["event_id"]
    with pytest.raises(ValidationError, match="event_id"):
        Score.from_bytes(orjson.dumps(record))


def test_what_enters_from_outside_is_validated_strictly():
    with pytest.raises(ValidationError, match=r"typo_d_field"):
        Score.model_validate({**orjson.loads(a_score()), "typo_d_field": 1})


def test_aliased_fields_round_trip_through_bytes():
    call = LlmCall(schema="llm_call/1", event_id=uuid.uuid4(), ts=now_utc(), app_id="shop", model="m1", prompt="hi",
                   output="yo")
    assert LlmCall.from_bytes(call.to_bytes()) == call
    assert orjson.loads(call.to_bytes())["schema"] == "llm_call/1"
