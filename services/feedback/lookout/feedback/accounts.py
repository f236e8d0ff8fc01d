"""Reviewer accounts and login sessions, stored in ClickHouse.

Passwords: argon2id (argon2-cffi) at OWASP's recommended cost (19 MiB, 2 passes, 1 lane;
about 30 ms a check). Hashes made before, scrypt with n=2**14, still verify and are
replaced by an argon2id hash at the next successful login (as are argon2 hashes of an
older cost). Sessions: the cookie carries 32 random bytes; only their sha256 is stored,
with the session's CSRF token, which state-changing requests must echo in X-CSRF-Token. A
password change ends every session of the account (but the one that made the change).
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

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from lookout.core.session import ClientLike, Session

Role = Literal["viewer", "reviewer", "admin"]
ROLES: tuple[str, ...] = ("viewer", "reviewer", "admin")
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def _check_scrypt(password: str, stored: str) -> bool:
    """The hashes this service made before argon2id: scrypt$n$r$p$salt$digest."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        if int(n) > 2**20 or int(r) > 32 or int(p) > 16:  # a stored hash must not buy unbounded work
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32,
                             maxmem=64 << 20)
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def check_password(password: str, stored: str) -> bool:
    if stored.startswith("scrypt$"):
        return _check_scrypt(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether a hash that just verified should be replaced by one at today's cost."""
    if stored.startswith("scrypt$"):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


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
class LoginSession:
    username: str
    csrf: str
    expires_at: datetime


_R_COLS = ["username", "password_hash", "role", "apps", "disabled", "version"]
_S_COLS = ["session_hash", "username", "csrf", "expires_at", "revoked", "version"]


class Accounts:
    """Sessions are cached in memory for `cache_ttl_s`, so a page's requests do not each
    query ClickHouse; the price is that a logout or a disabled account on *another*
    instance takes effect within that TTL (on this instance at once)."""

    def __init__(self, db: Session | ClientLike, session_ttl_s: int, cache_ttl_s: float = 5.0):
        self.db = Session.of(db)  # the client's one Session: its lock is the one every user of it takes
        self.session_ttl = timedelta(seconds=session_ttl_s)
        self._cache_ttl = cache_ttl_s
        self._cache: dict[str, tuple[float, tuple[LoginSession, Reviewer]]] = {}
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
               apps: list[str] | None = None, disabled: bool | None = None,
               keep_session: str | None = None) -> Reviewer:
        """Create or change an account. A new password ends every session of the account
        except `keep_session` (the cookie of the caller who changed their own password)."""
        current = self._row(username)
        if current is None and (password is None or role is None):
            raise ValueError("a new reviewer needs a password and a role")
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        # What a field keeps when the call does not change it; a new account brings its own
        # password and role (checked above), and starts with no apps, enabled.
        _, old_hash, old_role, old_apps, old_disabled = current if current is not None else ("", "", "", [], 0)
        new = [
            username,
            hash_password(password) if password is not None else old_hash,
            role if role is not None else old_role,
            list(apps) if apps is not None else list(old_apps),
            int(disabled) if disabled is not None else int(old_disabled),
            time.time_ns(),
        ]
        self.db.insert("reviewers", [new], _R_COLS)
        if password is not None and current is not None:
            self.end_sessions(username, keep=keep_session)
        self._forget(username=username)
        return Reviewer(new[0], new[2], tuple(new[3]), bool(new[4]))

    def end_sessions(self, username: str, keep: str | None = None) -> int:
        """Revoke every live session of `username` but the one of cookie `keep`."""
        kept = _sha(keep) if keep else ""
        rows = self.db.rows(
            "SELECT session_hash, csrf, expires_at FROM review_sessions FINAL WHERE username = {u:String} "
            "AND revoked = 0 AND expires_at > now64(3) AND session_hash != {k:String}", u=username, k=kept)
        version = time.time_ns()
        self.db.insert("review_sessions", [[h, username, csrf, exp, 1, version] for h, csrf, exp in rows], _S_COLS)
        self._forget(username=username)
        return len(rows)

    def change_password(self, username: str, current: str, new: str, cookie: str) -> bool:
        """The account's own password change: False when `current` is wrong."""
        row = self._row(username)
        if row is None or not check_password(current, row[1]):
            return False
        self.upsert(username, password=new, keep_session=cookie)
        return True

    def login(self, username: str, password: str) -> tuple[str, LoginSession] | None:
        """(cookie value, session) for a right password, else None."""
        row = self._row(username)
        ok = check_password(password, row[1] if row else _DUMMY)
        if not ok or row is None or row[4]:
            return None
        if needs_rehash(row[1]):
            # The same password, hashed at today's cost: not a password change, sessions stay.
            self.db.insert("reviewers", [[row[0], hash_password(password), row[2], list(row[3]), int(row[4]),
                                          time.time_ns()]], _R_COLS)
        cookie = secrets.token_urlsafe(32)
        session = LoginSession(username, secrets.token_urlsafe(24), datetime.now(UTC) + self.session_ttl)
        values = [_sha(cookie), username, session.csrf, session.expires_at, 0, time.time_ns()]
        self.db.insert("review_sessions", [values], _S_COLS)
        return cookie, session

    def session(self, cookie: str | None) -> tuple[LoginSession, Reviewer] | None:
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

    def _session(self, cookie: str) -> tuple[LoginSession, Reviewer] | None:
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
        return LoginSession(username, csrf, expires_at), reviewer

    def logout(self, cookie: str) -> None:
        found = self.session(cookie)
        if found:
            s = found[0]
            self.db.insert("review_sessions", [[_sha(cookie), s.username, s.csrf, s.expires_at, 1, time.time_ns()]],
                           _S_COLS)
            self._forget(cookie_hash=_sha(cookie))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
