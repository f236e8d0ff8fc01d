"""Credentials with bytes above 0x7f (headers arrive latin-1 decoded): every route that
compares a secret or checks a key answers 401/403, never a 500, on the real service."""

from __future__ import annotations

import uuid

import httpx
import pytest

from lookout.core.settings import CommonSettings

from .conftest import ADMIN, FeedbackStack

NON_ASCII = ["\xe9", "v1.\xe9\xff.\xe9", "lk_" + "\xe9" * 12 + "_" + "a" * 43]


@pytest.fixture(scope="module")
def stack(tansu_broker, chdb_path):
    common = CommonSettings(
        kafka_bootstrap=tansu_broker.bootstrap, kafka_idempotence="off", topic_prefix="nonascii.",
        clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database="nonascii", kafka_topic_partitions=1,
    )
    s = FeedbackStack(common)
    yield s
    s.close()


def raw(name: str, value: str) -> tuple[bytes, bytes]:
    return name.encode(), value.encode("latin-1")


@pytest.mark.parametrize("value", NON_ASCII)
def test_a_non_ascii_feedback_token_is_a_401(stack, value):
    r = httpx.post(f"{stack.url}/v1/feedback", json={"event_id": str(uuid.uuid4()), "thumbs": -1},
                   headers=[raw("X-Feedback-Token", value)])
    assert r.status_code == 401, r.text
    assert r.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/feedback", {"event_id": str(uuid.uuid4()), "thumbs": 1}),
    ("POST", "/v1/feedback/token", {"event_id": str(uuid.uuid4())}),
    ("POST", "/v1/datasets", None),
    ("GET", "/v1/datasets/export", None),
])
@pytest.mark.parametrize("value", NON_ASCII)
def test_a_non_ascii_api_key_is_a_401(stack, method, path, body, value):
    r = httpx.request(method, f"{stack.url}{path}", json=body, headers=[raw("Authorization", f"Bearer {value}")])
    assert r.status_code == 401, r.text


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/review/api/logout", None),
    ("POST", "/review/api/next", {}),
    ("PATCH", "/review/api/admin/settings", {}),
    ("POST", "/review/api/admin/reviewers", {"username": "x", "password": "password-123", "role": "viewer",
                                              "apps": ["*"]}),
])
def test_a_non_ascii_csrf_token_is_a_403(stack, method, path, body):
    with stack.login(*ADMIN) as admin:
        for value in NON_ASCII:
            r = admin.request(method, path, json=body, headers=[raw("X-CSRF-Token", value)])
            assert r.status_code == 403, r.text
            assert "CSRF" in r.json()["error"]["message"]
        assert admin.get("/review/api/me").status_code == 200  # the session is unharmed


@pytest.mark.parametrize("value", NON_ASCII)
def test_a_non_ascii_session_cookie_is_a_401(stack, value):
    r = httpx.get(f"{stack.url}/review/api/me", headers=[raw("Cookie", f"lookout_review={value}")])
    assert r.status_code == 401, r.text
