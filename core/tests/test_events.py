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


# -- identifiers -------------------------------------------------------------------------

REAL_MODEL_NAMES = [
    "gpt-4o-mini-2024-07-18",
    "meta-llama/Llama-3.1-8B-Instruct",
    "claude-3-5-sonnet@20240620",
    "models/gemini-1.5-pro",
    "ft:gpt-4o-mini:org:name:id",
    "ft:gpt-3.5-turbo-0613:personal::7qZ3aBcD",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "llama3.1:8b-instruct-q4_K_M",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
]


def a_call(**fields) -> LlmCall:
    base = {"event_id": str(uuid.uuid4()), "ts": "2026-01-01T00:00:00Z", "app_id": "shop", "model": "m1"}
    return LlmCall.model_validate({**base, **fields})


@pytest.mark.parametrize("name", REAL_MODEL_NAMES)
def test_real_model_names_are_valid_identifiers_in_every_identifier_field(name):
    call = a_call(model=name, model_version=name, prompt_version=name, environment=name[:64])
    assert (call.model, call.model_version, call.prompt_version) == (name, name, name)


@pytest.mark.parametrize("field", ["model", "environment", "prompt_version", "model_version", "app_id"])
@pytest.mark.parametrize(
    "value",
    ["gpt' OR '1'='1", "gpt\\", "gpt 4o", "gpt\t4o", "m1--", "${__all}", "m{1}", "m1;DROP", "-m1", "modèle", "m%"],
)
def test_identifiers_refuse_quotes_backslashes_whitespace_and_sql_or_template_characters(field, value):
    with pytest.raises(ValidationError) as info:
        a_call(**{field: value})
    error = info.value.errors()[0]
    assert error["loc"] == (field,)
    assert "may hold only" in error["msg"] and "never contain '--'" in error["msg"]
    assert value not in error["msg"]  # the value itself is never echoed


@pytest.mark.parametrize(("field", "limit"), [("model", 256), ("environment", 64), ("prompt_version", 1024),
                                            ("model_version", 1024), ("app_id", 128)])
def test_identifier_lengths_are_checked_first_and_said_in_characters(field, limit):
    # Length before characters: a hostile megabyte is refused before any pattern runs over it.
    for value, words in (("m" * (limit + 1), f"at most {limit} characters"), ("-" * (limit + 1), f"at most {limit}")):
        with pytest.raises(ValidationError) as info:
            a_call(**{field: value})
        error = info.value.errors()[0]
        assert (error["loc"], words in error["msg"]) == ((field,), True)
    with pytest.raises(ValidationError) as info:  # within the limit, the characters decide
        a_call(**{field: "m" * (limit - 1) + "'"})
    assert "may hold only" in info.value.errors()[0]["msg"]


def test_app_ids_are_narrower_than_other_identifiers():
    with pytest.raises(ValidationError, match="app_id"):
        a_call(app_id="org/app")
    assert a_call(model="org/model").model == "org/model"


def test_an_empty_optional_version_means_none():
    call = a_call(prompt_version="", model_version="")
    assert call.prompt_version is None and call.model_version is None
    with pytest.raises(ValidationError, match="model"):
        a_call(model="")


def test_metadata_keys_are_capped_like_values():
    with pytest.raises(ValidationError, match="metadata"):
        a_call(metadata={"k" * 1025: "v"})


def test_the_readme_documents_the_identifier_character_sets():
    from pathlib import Path

    from lookout.core.events import APP_ID_CHARS, IDENTIFIER_CHARS

    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    for chars in (IDENTIFIER_CHARS, APP_ID_CHARS):
        assert f"ASCII letters, digits and `{chars.split(' and ')[1]}`" in readme
