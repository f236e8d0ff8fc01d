"""Reviewer accounts over HTTP: cookie flags, CSRF, roles, admin-only management."""

from __future__ import annotations

import httpx
import pytest

from lookout.feedback.accounts import Accounts, Reviewer


def test_session_cookie_csrf_and_roles(kafka_feedback_stack):
    stack = kafka_feedback_stack
    with httpx.Client(base_url=stack.url, timeout=30) as anon:
        assert anon.get("/review/api/me").status_code == 401
        bad = anon.post("/review/api/login", json={"username": "admin", "password": "wrong-password"})
        assert bad.status_code == 401 and bad.json()["error"]["message"] == "wrong user name or password"
        nobody = anon.post("/review/api/login", json={"username": "nobody", "password": "wrong-password"})
        assert nobody.status_code == 401
        r = anon.post("/review/api/login", json={"username": "admin", "password": "admin-password-1"})
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        csrf = r.json()["csrf"]
        # Logged in, but a state-changing request without the CSRF token is refused.
        body = {"username": "vic", "password": "password-123", "role": "viewer", "apps": ["shop"]}
        assert anon.post("/review/api/admin/reviewers", json=body).status_code == 403
        wrong = {"X-CSRF-Token": "x" * 32}
        assert anon.post("/review/api/admin/reviewers", json=body, headers=wrong).status_code == 403
        assert anon.post("/review/api/admin/reviewers", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201
        assert anon.post("/review/api/admin/reviewers", json=body, headers={"X-CSRF-Token": csrf}).status_code == 409
        listed = anon.get("/review/api/admin/reviewers").json()["reviewers"]
        assert {"username": "vic", "role": "viewer", "apps": ["shop"], "disabled": False} in listed

        # Logout ends the session.
        assert anon.post("/review/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
        assert anon.get("/review/api/me").status_code == 401

    with stack.login("vic", "password-123") as vic:
        assert vic.get("/review/api/me").json()["role"] == "viewer"
        assert vic.post("/review/api/next", json={}).status_code == 403  # viewers cannot review
        assert vic.post("/review/api/admin/reviewers", json={"username": "x", "password": "password-123"}
                        ).status_code == 403
        assert vic.get("/review/api/progress").status_code == 200

    # Admin changes the role and apps, then disables the account: its session stops working.
    with stack.login("admin", "admin-password-1") as admin:
        r = admin.patch("/review/api/admin/reviewers/vic", json={"role": "reviewer", "apps": ["shop", "bank"]})
        assert r.json() == {"username": "vic", "role": "reviewer", "apps": ["shop", "bank"], "disabled": False}
        assert admin.patch("/review/api/admin/reviewers/ghost", json={"disabled": True}).status_code == 404
        with stack.login("vic", "password-123") as vic:
            assert vic.post("/review/api/next", json={}).json()["task"] is None
            admin.patch("/review/api/admin/reviewers/vic", json={"disabled": True})
            assert vic.get("/review/api/me").status_code == 401


def test_an_account_needs_a_password_and_role_to_start_and_a_change_keeps_what_it_does_not_name(ch):
    accounts = Accounts(ch, session_ttl_s=3600)
    with pytest.raises(ValueError, match="a new reviewer needs a password and a role"):
        accounts.upsert("nina", role="reviewer")
    with pytest.raises(ValueError, match="a new reviewer needs a password and a role"):
        accounts.upsert("nina", password="password-123")
    assert accounts.upsert("nina", password="password-123", role="reviewer") == Reviewer("nina", "reviewer", ())
    assert accounts.upsert("nina", apps=["shop"]) == Reviewer("nina", "reviewer", ("shop",))
    assert accounts.upsert("nina", role="viewer") == Reviewer("nina", "viewer", ("shop",))
    assert accounts.login("nina", "password-123") is not None  # the password was kept
    accounts.upsert("nina", disabled=True)
    assert accounts.get("nina") == Reviewer("nina", "viewer", ("shop",), disabled=True)
