import gzip

import orjson
import pytest

from lookout.ingest.intake import IntakeError, decode_body, gunzip, validate_events

EVENT = {
    "event_id": "0190f0e4-7b5c-7cc1-8a4e-1a2b3c4d5e6f",
    "ts": "2026-11-26T10:00:00Z",
    "app_id": "shop",
    "model": "gpt-4o-mini",
}


def test_valid_and_invalid_events_are_sorted_per_item_with_the_field_named():
    bad_type = {**EVENT, "tokens_in": "many"}
    missing = {k: v for k, v in EVENT.items() if k != "model"}
    accepted, rejected = validate_events({"events": [EVENT, bad_type, missing, 7]}, max_events=10)
    assert [i for i, _ in accepted] == [0]
    assert [(r.index, r.field) for r in rejected] == [(1, "tokens_in"), (2, "model"), (3, "(event)")]


def test_unknown_fields_and_naive_timestamps_are_rejected():
    _, rejected = validate_events(
        {"events": [{**EVENT, "colour": "red"}, {**EVENT, "ts": "2026-11-26T10:00:00"}]}, max_events=10
    )
    assert [(r.field, "timezone" in r.message or "Extra" in r.message) for r in rejected] == [
        ("colour", True),
        ("ts", True),
    ]


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ([EVENT], 422, "events"),
        ({"events": "x"}, 422, "events"),
        ({"events": []}, 422, "events"),
        ({"events": [EVENT], "extra": 1}, 422, "extra"),
        ({"events": [EVENT] * 3}, 413, "events"),
    ],
)
def test_whole_body_problems_name_the_status_and_field(payload, status, field):
    with pytest.raises(IntakeError) as err:
        validate_events(payload, max_events=2)
    assert (err.value.status, err.value.field) == (status, field)


def test_content_type_and_encoding_are_checked():
    body = orjson.dumps({"events": [EVENT]})
    decoded = decode_body(body, "application/json; charset=utf-8", None, max_bytes=1 << 20)
    assert isinstance(decoded, dict) and decoded["events"][0] == EVENT
    with pytest.raises(IntakeError) as err:
        decode_body(body, "text/plain", None, max_bytes=1 << 20)
    assert err.value.status == 415
    with pytest.raises(IntakeError) as err:
        decode_body(body, "application/json", "br", max_bytes=1 << 20)
    assert err.value.status == 415
    with pytest.raises(IntakeError) as err:
        decode_body(b"{not json", "application/json", None, max_bytes=1 << 20)
    assert err.value.status == 400


def test_gzip_bodies_decode_and_bombs_and_garbage_are_refused():
    body = orjson.dumps({"events": [EVENT]})
    decoded = decode_body(gzip.compress(body), "application/json", "gzip", max_bytes=1 << 20)
    assert isinstance(decoded, dict) and decoded["events"] == [EVENT]
    bomb = gzip.compress(b" " * (5 << 20))  # 5 MiB of spaces in ~5 KiB
    with pytest.raises(IntakeError) as err:
        gunzip(bomb, 1 << 20)
    assert err.value.status == 413
    with pytest.raises(IntakeError) as err:
        gunzip(b"\x1f\x8b\x08garbage", 1 << 20)
    assert err.value.status == 400
    with pytest.raises(IntakeError) as err:
        gunzip(gzip.compress(body)[:-12], 1 << 20)
    assert err.value.status == 400


@pytest.mark.parametrize(
    "field, value",
    [
        ("model", "gpt-4o') OR 1=1 --"),
        ("environment", "prod\\"),
        ("prompt_version", "v1 ${__user.login}"),
        ("model_version", 'x"y'),
        ("app_id", "shop'"),
    ],
)
def test_identifiers_outside_the_character_set_are_rejected_naming_the_field(field, value):
    accepted, rejected = validate_events({"events": [EVENT, {**EVENT, field: value}]}, max_events=10)
    assert [i for i, _ in accepted] == [0]
    assert [(r.index, r.field) for r in rejected] == [(1, field)]
    assert "may hold only" in rejected[0].message
