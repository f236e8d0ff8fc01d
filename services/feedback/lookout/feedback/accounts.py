"""Reviewer accounts and login sessions, stored in ClickHouse.

Passwords: scrypt (n=2**14, r=8, p=1, 16-byte salt), a memory-hard hash from the standard
library. Sessions: the cookie carries 32 random bytes; only their sha256 is stored, with
the session's CSRF token, which state-changing requests must echo in X-CSRF-Token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from .store import Db

Role = Literal["viewer", "reviewer", "admin"]
ROLES: tuple[str, ...] = ("viewer", "reviewer", "admin")
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


# Compared against when the user does not exist, so a login takes as long either way.
_DUMMY = hash_password(secrets.token_hex(8))


@dataclass(frozen=True)
class Reviewer:
    username: str
    role: str
    apps: tuple[str, ...]  # ("*",) for every app
    disabled: bool = False

    def sees(self, app_id: str) -> bool:
        return self.role == "admin" or "*" in self.apps or app_id in self.apps

    def app_scope(self) -> tuple[str, ...] | None:
        """The apps this reviewer's queue covers; None for every app."""
        return None if self.role == "admin" or "*" in self.apps else tuple(self.apps)


@dataclass(frozen=True)
class Session:
    username: str
    csrf: str
    expires_at: datetime


_R_COLS = ["username", "password_hash", "role", "apps", "disabled", "version"]
_S_COLS = ["session_hash", "username", "csrf", "expires_at", "revoked", "version"]


class Accounts:
    """Sessions are cached in memory for `cache_ttl_s`, so a page's requests do not each
    query ClickHouse; the price is that a logout or a disabled account on *another*
    instance takes effect within that TTL (on this instance at once)."""

    def __init__(self, db: Db, session_ttl_s: int, cache_ttl_s: float = 5.0):
        self.db = db
        self.session_ttl = timedelta(seconds=session_ttl_s)
        self._cache_ttl = cache_ttl_s
        self._cache: dict[str, tuple[float, tuple[Session, Reviewer]]] = {}
        self._cache_lock = threading.Lock()

    def _forget(self, username: str | None = None, cookie_hash: str | None = None) -> None:
        with self._cache_lock:
            for key, (_, (session, _r)) in list(self._cache.items()):
                if key == cookie_hash or session.username == username:
                    del self._cache[key]

    def _row(self, username: str) -> tuple | None:
        rows = self.db.rows(
            "SELECT username, password_hash, role, apps, disabled FROM reviewers FINAL WHERE username = {u:String}",
            u=username,
        )
        return rows[0] if rows else None

    def get(self, username: str) -> Reviewer | None:
        row = self._row(username)
        return Reviewer(row[0], row[2], tuple(row[3]), bool(row[4])) if row else None

    def list(self) -> list[Reviewer]:
        rows = self.db.rows("SELECT username, role, apps, disabled FROM reviewers FINAL ORDER BY username")
        return [Reviewer(r[0], r[1], tuple(r[2]), bool(r[3])) for r in rows]

    def upsert(self, username: str, *, password: str | None = None, role: str | None = None,
               apps: list[str] | None = None, disabled: bool | None = None) -> Reviewer:
        current = self._row(username)
        if current is None and (password is None or role is None):
            raise ValueError("a new reviewer needs a password and a role")
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        pw_hash = hash_password(password) if password is not None else current[1]
        new = [
            username,
            pw_hash,
            role if role is not None else current[2],
            list(apps) if apps is not None else list(current[3] if current else []),
            int(disabled) if disabled is not None else int(current[4] if current else 0),
            time.time_ns(),
        ]
        self.db.insert("reviewers", [new], _R_COLS)
        self._forget(username=username)
        return Reviewer(new[0], new[2], tuple(new[3]), bool(new[4]))

    def login(self, username: str, password: str) -> tuple[str, Session] | None:
        """(cookie value, session) for a right password, else None."""
        row = self._row(username)
        ok = check_password(password, row[1] if row else _DUMMY)
        if not ok or row is None or row[4]:
            return None
        cookie = secrets.token_urlsafe(32)
        session = Session(username, secrets.token_urlsafe(24), datetime.now(UTC) + self.session_ttl)
        values = [_sha(cookie), username, session.csrf, session.expires_at, 0, time.time_ns()]
        self.db.insert("review_sessions", [values], _S_COLS)
        return cookie, session

    def session(self, cookie: str | None) -> tuple[Session, Reviewer] | None:
        if not cookie:
            return None
        key = _sha(cookie)
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now and hit[1][0].expires_at > datetime.now(UTC):
            return hit[1]
        found = self._session(cookie)
        with self._cache_lock:
            if found is None:
                self._cache.pop(key, None)
            else:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (now + self._cache_ttl, found)
        return found

    def _session(self, cookie: str) -> tuple[Session, Reviewer] | None:
        rows = self.db.rows(
            "SELECT username, csrf, expires_at, revoked FROM review_sessions FINAL WHERE session_hash = {h:String}",
            h=_sha(cookie),
        )
        if not rows or rows[0][3]:
            return None
        username, csrf, expires_at, _ = rows[0]
        expires_at = expires_at.replace(tzinfo=UTC) if expires_at.tzinfo is None else expires_at
        if expires_at <= datetime.now(UTC):
            return None
        reviewer = self.get(username)
        if reviewer is None or reviewer.disabled:
            return None
        return Session(username, csrf, expires_at), reviewer

    def logout(self, cookie: str) -> None:
        found = self.session(cookie)
        if found:
            s = found[0]
            self.db.insert("review_sessions", [[_sha(cookie), s.username, s.csrf, s.expires_at, 1, time.time_ns()]],
                           _S_COLS)
            self._forget(cookie_hash=_sha(cookie))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
