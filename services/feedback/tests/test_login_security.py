"""Reviewer login under attack: failed-login limits per account and per address (429, the
same for names that are no account), argon2id with the upgrade of old scrypt hashes, a
password change that ends the account's other sessions, and the cookie's Secure rule."""

from __future__ import annotations

import time

import httpx
from starlette.requests import Request

from lookout.feedback import accounts
from lookout.feedback.login import Proxies, parse_networks

from .test_tokens import _scrypt


def _login(stack, username: str, password: str, address: str, **headers) -> httpx.Response:
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        # The test client is on 127.0.0.1, which uvicorn trusts as a proxy: X-Forwarded-For
        # stands for the client address a real proxy would pass on.
        return http.post("/review/api/login", json={"username": username, "password": password},
                         headers={"X-Forwarded-For": address, **headers})


def test_failed_logins_lock_the_account_and_the_address_and_tell_nobody_which_accounts_exist(kafka_feedback_stack):
    stack = kafka_feedback_stack
    stack.add_reviewer("rita", ["shop"], password="rita-password-1")

    # A success clears the account's count: 4 failures, a login, 4 more failures are no lockout.
    for _ in range(2):
        assert [_login(stack, "rita", "guess", "198.51.100.1").status_code for _ in range(4)] == [401] * 4
        assert _login(stack, "rita", "rita-password-1", "198.51.100.1").status_code == 200

    # Five failures in a row lock the name, for an existing account and a made-up one alike.
    for name in ("rita", "no-such-user"):
        answers = [_login(stack, name, f"guess-{i}", f"198.51.100.{10 + i}") for i in range(5)]
        assert [r.status_code for r in answers] == [401, 401, 401, 401, 429], name
        assert answers[0].json() == {"error": {"status": 401, "message": "wrong user name or password"}}
        locked = answers[-1]
        assert locked.json() == {"error": {"status": 429, "message": "too many failed logins; try again in 900 s"}}
        assert locked.headers["retry-after"] == "900"
        # Locked means locked: the right password from a fresh address gets the same 429.
        again = _login(stack, name, "rita-password-1", "203.0.113.77")
        assert (again.status_code, again.json(), again.headers["retry-after"]) == (429, locked.json(), "900")

    # One address trying many names is blocked after 20 failures, whatever the names.
    spray = [_login(stack, f"user-{i}", "password", "192.0.2.50").status_code for i in range(20)]
    assert spray == [401] * 19 + [429]
    assert _login(stack, "admin", "admin-password-1", "192.0.2.50").status_code == 429
    # Other addresses, and other accounts, are untouched; the service keeps serving.
    assert _login(stack, "admin", "admin-password-1", "192.0.2.51").status_code == 200
    assert _login(stack, "user-1", "password", "192.0.2.51").status_code == 401
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200


def test_an_old_scrypt_hash_becomes_argon2id_at_the_next_login(kafka_feedback_stack):
    stack = kafka_feedback_stack
    stack.client.insert("reviewers", [["olga", _scrypt("olga-password-1"), "reviewer", ["shop"], 0, time.time_ns()]],
                        column_names=["username", "password_hash", "role", "apps", "disabled", "version"])

    def stored() -> str:
        return stack.client.query("SELECT password_hash FROM reviewers FINAL WHERE username = 'olga'").result_rows[0][0]

    assert stored().startswith("scrypt$")
    with stack.login("olga", "olga-password-1") as first:
        assert stored().startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert accounts.check_password("olga-password-1", stored())
        # The same password, hashed again: not a password change, so the session lives on.
        assert first.get("/review/api/me").status_code == 200
        with stack.login("olga", "olga-password-1") as second:
            assert second.get("/review/api/me").json()["username"] == "olga"
    assert _login(stack, "olga", "wrong", "198.51.100.3").status_code == 401


def test_a_password_change_ends_every_other_session_of_the_account(kafka_feedback_stack):
    stack = kafka_feedback_stack
    stack.add_reviewer("pat", ["shop"], password="pat-password-1")
    here, elsewhere = stack.login("pat", "pat-password-1"), stack.login("pat", "pat-password-1")
    with here, elsewhere:
        wrong = here.post("/review/api/password", json={"current_password": "nope",
                                                         "new_password": "pat-password-2"})
        assert wrong.status_code == 403 and wrong.json()["error"]["field"] == "current_password"
        assert elsewhere.get("/review/api/me").status_code == 200  # a failed change ends nothing
        r = here.post("/review/api/password", json={"current_password": "pat-password-1",
                                                     "new_password": "pat-password-2"})
        assert r.status_code == 200, r.text
        assert here.get("/review/api/me").status_code == 200  # the session that changed it stays
        assert elsewhere.get("/review/api/me").status_code == 401
    assert _login(stack, "pat", "pat-password-1", "198.51.100.4").status_code == 401
    with stack.login("pat", "pat-password-2") as later:
        # An admin setting a new password ends all of the account's sessions.
        with stack.login("admin", "admin-password-1") as admin:
            assert admin.patch("/review/api/admin/reviewers/pat", json={"password": "pat-password-3"}
                               ).status_code == 200
            assert admin.get("/review/api/me").status_code == 200  # the admin's own session is not touched
        assert later.get("/review/api/me").status_code == 401
    with stack.login("pat", "pat-password-3") as newest:
        assert newest.get("/review/api/me").status_code == 200


def test_the_session_cookie_is_secure_when_the_login_came_over_https(kafka_feedback_stack):
    stack = kafka_feedback_stack
    plain = _login(stack, "admin", "admin-password-1", "198.51.100.5")
    assert plain.status_code == 200 and "secure" not in plain.headers["set-cookie"].lower()
    proxied = _login(stack, "admin", "admin-password-1", "198.51.100.5", **{"X-Forwarded-Proto": "https"})
    assert proxied.status_code == 200 and "; secure" in proxied.headers["set-cookie"].lower()


def _request(peer: str, **headers) -> Request:
    scope = {"type": "http", "method": "POST", "path": "/review/api/login", "scheme": "http", "server": ("x", 80),
             "client": (peer, 40000), "query_string": b"",
             "headers": [(k.lower().replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}
    return Request(scope)


def test_forwarded_headers_count_only_from_a_trusted_proxy():
    proxies = Proxies(parse_networks("10.0.0.0/8, 192.168.1.7"))
    forwarded = {"X_Forwarded_For": "203.0.113.9, 10.1.2.3", "X_Forwarded_Proto": "https"}
    # From the proxy: the nearest address it did not add, and the scheme the client used.
    o = proxies.origin(_request("192.168.1.7", **forwarded))
    assert (o.address, o.https) == ("203.0.113.9", True)
    # From anyone else the headers are ignored: a client cannot pick the address it is counted
    # under, nor claim https for a plain connection.
    o = proxies.origin(_request("198.51.100.20", **forwarded))
    assert (o.address, o.https) == ("198.51.100.20", False)
    # A client's own X-Forwarded-For entries in front of the proxy's do not hide it.
    o = proxies.origin(_request("10.0.0.1", X_Forwarded_For="1.2.3.4, 198.51.100.21"))
    assert o.address == "198.51.100.21" and not o.https
    assert Proxies().origin(_request("10.0.0.1", **forwarded)).address == "10.0.0.1"
    try:
        parse_networks("10.0.0.0/8, not-an-ip")
    except ValueError as exc:
        assert "not-an-ip" in str(exc)
    else:
        raise AssertionError("a bad proxy entry must be refused")
