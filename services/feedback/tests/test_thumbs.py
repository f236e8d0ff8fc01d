"""End-user thumbs: POST /v1/feedback by API key or feedback token (on Apache Kafka only:
the checks sit in front of the broker)."""

from __future__ import annotations

import time
import uuid

from lookout.core.pii import pseudonymise
from lookout.feedback import tokens
from lookout.testing.marks import on_kafka_only

from .conftest import PII_SECRET, TOKEN_SECRET


def pseudonym(user_id: str) -> str:
    """What ingest stores for this user_id, and so what a vote's author is."""
    return pseudonymise(user_id, PII_SECRET.encode())


def _stored(stack, event_id, user):
    return stack.client.query(
        "SELECT thumbs, comment FROM feedback_latest WHERE event_id = {e:UUID} AND author = {a:String}",
        parameters={"e": str(event_id), "a": pseudonym(user)},
    ).result_rows


@on_kafka_only
def test_thumbs_by_key_is_stored_and_a_new_vote_replaces_the_old(feedback_stack):
    stack = feedback_stack
    [event_id] = stack.add_calls("shop", 1)
    with stack.key_http() as http:
        r = http.post("/v1/feedback", json={"event_id": str(event_id), "thumbs": 1, "user_id": "alice"})
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] is False and r.json()["replaced"] is False
        first = r.json()["feedback_id"]
        stack.wait_rows("SELECT count() FROM feedback WHERE event_id = {e:UUID}", 1, e=str(event_id))

        again = http.post("/v1/feedback", json={"event_id": str(event_id), "thumbs": 1, "user_id": "alice"})
        assert again.status_code == 200 and again.json() == {**r.json(), "duplicate": True}
        assert again.json()["feedback_id"] == first

        flip = http.post("/v1/feedback", json={"event_id": str(event_id), "thumbs": -1, "user_id": "alice",
                                               "comment": "wrong"})
        assert flip.status_code == 200 and flip.json()["replaced"] is True
    stack.wait_rows("SELECT count() FROM feedback WHERE event_id = {e:UUID}", 2, e=str(event_id))
    assert _stored(stack, event_id, "alice") == [(-1, "wrong")]

    # A change of mind right away (both votes likely in one sink batch): the later one wins.
    with stack.key_http() as http:
        for thumbs in (1, -1, 1):
            assert http.post("/v1/feedback", json={"event_id": str(event_id), "thumbs": thumbs,
                                                   "user_id": "carol"}).status_code == 200
    stack.wait_rows("SELECT count() FROM feedback WHERE event_id = {e:UUID} AND author = {a:String}", 3,
                    e=str(event_id), a=pseudonym("carol"))
    assert _stored(stack, event_id, "carol") == [(1, "")]


@on_kafka_only
def test_unknown_event_and_bad_input_are_4xx(feedback_stack):
    with feedback_stack.key_http() as http:
        r = http.post("/v1/feedback", json={"event_id": str(uuid.uuid4()), "thumbs": 1})
        assert r.status_code == 404 and r.json()["error"]["field"] == "event_id"
        r = http.post("/v1/feedback", json={"event_id": str(uuid.uuid4()), "thumbs": 0})
        assert r.status_code == 422 and r.json()["error"]["field"] == "thumbs"
    with feedback_stack.key_http(key="lk_nope") as http:
        r = http.post("/v1/feedback", json={"event_id": str(uuid.uuid4()), "thumbs": 1})
        assert r.status_code == 401


@on_kafka_only
def test_key_of_another_app_or_without_scope_cannot_vote(feedback_stack):
    stack = feedback_stack
    [event_id] = stack.add_calls("shop", 1)
    _, other_app = stack.ingest.keys.create("bank", ["feedback"])
    _, no_scope = stack.ingest.keys.create("shop", ["ingest"])
    with stack.key_http(other_app) as http:
        assert http.post("/v1/feedback", json={"event_id": str(event_id), "thumbs": 1}).status_code == 404
    with stack.key_http(no_scope) as http:
        assert http.post("/v1/feedback", json={"event_id": str(event_id), "thumbs": 1}).status_code == 403


@on_kafka_only
def test_feedback_tokens_forged_expired_or_for_another_call_are_401_valid_is_stored_once(feedback_stack):
    stack = feedback_stack
    call, other = stack.add_calls("shop", 2)
    with stack.key_http() as http:
        r = http.post("/v1/feedback/token", json={"event_id": str(call), "user_id": "bob"})
        assert r.status_code == 200, r.text
        token = r.json()["token"]
    browser = {"X-Feedback-Token": token}
    import httpx

    with httpx.Client(base_url=stack.url, timeout=30) as http:  # no API key: a browser
        forged_payload = token.split(".")
        forged = ".".join([forged_payload[0], forged_payload[1], "A" * len(forged_payload[2])])
        expired, _ = tokens.mint(TOKEN_SECRET, call, "shop", "bob", 1, now=time.time() - 10)
        wrong_secret, _ = tokens.mint("another-secret-abcdefgh", call, "shop", "bob", 600)
        for bad in (forged, expired, wrong_secret, "garbage"):
            r = http.post("/v1/feedback", json={"event_id": str(call), "thumbs": 1}, headers={"X-Feedback-Token": bad})
            assert r.status_code == 401, (bad, r.text)
        r = http.post("/v1/feedback", json={"event_id": str(other), "thumbs": 1}, headers=browser)
        assert r.status_code == 401 and "another call" in r.json()["error"]["message"]

        ok = http.post("/v1/feedback", json={"event_id": str(call), "thumbs": -1}, headers=browser)
        assert ok.status_code == 200, ok.text
        dup = http.post("/v1/feedback", json={"event_id": str(call), "thumbs": -1}, headers=browser)
        assert dup.json()["duplicate"] is True
    stack.wait_rows("SELECT count() FROM feedback WHERE event_id = {e:UUID}", 1, e=str(call))
    time.sleep(1)
    assert stack.client.query("SELECT count(), any(author) FROM feedback WHERE event_id = {e:UUID}",
                              parameters={"e": str(call)}).result_rows == [(1, pseudonym("bob"))]
