"""API keys, stored in ClickHouse (`api_keys`), and the scope/app checks every HTTP API makes.

A key reads `lk_<key_id>_<secret>`: key_id is 12 url-safe characters and names the row,
secret is 32 random bytes (url-safe base64). Only sha256(secret) is stored; the plaintext
is shown once, by `create`. The secret is 256 random bits, so a fast hash is enough (there
is no dictionary to try), and hashes are compared in constant time.

Lookups are cached in memory so ingest does not query ClickHouse per request; the price is
that a revoke made elsewhere takes effect within the cache TTL. Keys that exist and key ids
that do not are cached apart: a flood of random keys fills only the (bounded, short-lived)
negative cache and can never evict a valid key. A cache hit takes no lock; concurrent misses
of one key id share one query (single flight); a malformed key never reaches ClickHouse.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from clickhouse_connect.driver.client import Client

from .session import Session

SCOPES: tuple[str, ...] = ("ingest", "read", "feedback", "review", "admin")
ALL_APPS = "*"

_KEY = re.compile(r"^lk_([A-Za-z0-9_-]{12})_([A-Za-z0-9_-]{43})$")
# The same rule as events.AppId, so a key can only be bound to an app that can exist.
_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_COLUMNS = ["key_id", "key_hash", "app_id", "scopes", "name", "created_at", "revoked", "version"]


class AuthError(Exception):
    status_code: int = 401


class Unauthorized(AuthError):
    """No key, or one that does not verify: HTTP 401."""

    status_code = 401


class Forbidden(AuthError):
    """A valid key without the scope or app the request needs: HTTP 403."""

    status_code = 403


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    app_id: str
    scopes: frozenset[str]
    name: str
    created_at: datetime
    revoked: bool = False

    def allows(self, scope: str, app_id: str | None = None) -> bool:
        """Whether this key may act in `scope`, on `app_id` when given. admin implies every scope."""
        _check_scope(scope)
        if self.revoked:
            return False
        if scope not in self.scopes and "admin" not in self.scopes:
            return False
        return app_id is None or self.app_id in (ALL_APPS, app_id)


def authorize(key: ApiKey | None, scope: str, app_id: str | None = None) -> None:
    """Raise Unauthorized (401) without a valid key, Forbidden (403) when it lacks the scope or app."""
    _check_scope(scope)
    if key is None or key.revoked:
        raise Unauthorized("a valid API key is required (Authorization: Bearer lk_...)")
    if not key.allows(scope):
        have = ", ".join(sorted(key.scopes)) or "none"
        raise Forbidden(f"API key {key.key_id} lacks the {scope!r} scope (it has: {have})")
    if not key.allows(scope, app_id):
        raise Forbidden(f"API key {key.key_id} is bound to app {key.app_id!r} and cannot act on app {app_id!r}")


def parse_key(plaintext: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None."""
    m = _KEY.match(plaintext)
    return (m.group(1), m.group(2)) if m else None


_ID_ALPHABET = string.ascii_letters + string.digits


def generate_key() -> str:
    """A new plaintext key: a 12-character id and a 43-character secret (token_urlsafe(32)).

    The id is typed on command lines (`lookout keys revoke <id>`), so it is letters and
    digits only (71 bits): a urlsafe id that began with "-" read as an option there."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    return f"lk_{key_id}_{secrets.token_urlsafe(32)}"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def same_secret(given: str | bytes | None, expected: str | bytes) -> bool:
    """Constant-time equality for a secret a client sent (token, signature, CSRF value).

    hmac.compare_digest raises TypeError on a str with non-ASCII characters, and header
    values arrive latin-1 decoded, so one byte above 0x7f in a header would be a 500.
    Both sides are compared as UTF-8 bytes instead: a non-ASCII value is simply unequal."""
    if given is None:
        return False
    a = given.encode("utf-8", "surrogatepass") if isinstance(given, str) else given
    b = expected.encode("utf-8", "surrogatepass") if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


@dataclass(frozen=True)
class _Row:
    key: ApiKey
    key_hash: str
    version: int


_NO_STALE = object()


@dataclass
class _Flight:
    """One ClickHouse query that concurrent misses of the same thing wait for."""

    done: threading.Event = field(default_factory=threading.Event)
    value: object = None
    error: BaseException | None = None


class ApiKeyStore:
    """API keys on one ClickHouse client. Safe to share between threads.

    What a lookup may cost, cheapest first:
    - `_known`: rows of keys that exist (`cache_size`, `cache_ttl_s`). A hit is a dict
      `get`, atomic in CPython, so it takes no lock and never waits for a miss.
    - `_ids`: every stored key id, re-read at most every `negative_ttl_s` when a miss
      needs it (up to `known_ids_max` ids; beyond that the set is off). An id not in it may
      still be a key created elsewhere since, so it is looked up, but such lookups share a
      budget of `miss_queries_per_s` (token bucket): a flood of random keys costs ClickHouse
      that many small queries a second, not one per key, and under a flood a brand-new key
      works once the set is re-read (`negative_ttl_s`).
    - `_unknown`: ids a query found missing (`negative_size`, `negative_ttl_s`), kept apart
      from `_known` so misses can never evict a valid key.
    Each cache drops its oldest entry when full. Concurrent misses of one key id share one
    query (`_once`); a known key whose TTL ran out keeps serving its previous row to other
    threads while one of them re-reads it. `_write_lock` guards the caches' updates and the
    in-flight table only, and is never held over a query.
    """

    def __init__(
        self,
        client: Client,
        *,
        cache_ttl_s: float = 10.0,
        cache_size: int = 10_000,
        negative_ttl_s: float = 2.0,
        negative_size: int = 100_000,
        known_ids_max: int = 100_000,
        miss_queries_per_s: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = cache_ttl_s
        self._size = cache_size
        self._negative_ttl = negative_ttl_s
        self._negative_size = negative_size
        self._ids_max = known_ids_max
        self._miss_rate = miss_queries_per_s
        self._clock = clock
        self._miss_tokens = (miss_queries_per_s, clock())  # (tokens, when counted); burst = one second's
        self._known: OrderedDict[str, tuple[float, _Row]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        # (ids or None when there are too many to hold, valid until); None: never read.
        self._ids: tuple[set[str] | None, float] | None = None
        self._flights: dict[str, _Flight] = {}
        self._write_lock = threading.Lock()
        # One client is one HTTP session (or one chdb connection), and ClickHouse refuses
        # concurrent queries in one session, so queries from several threads take turns:
        # under the client's Session lock, shared with every other user of the client.
        self._db_lock = Session.of(client).lock

    # -- writing -------------------------------------------------------------------------

    def create(self, app_id: str, scopes: Iterable[str], name: str = "") -> tuple[ApiKey, str]:
        """A new key for `app_id` ("*": every app). The plaintext is returned here only."""
        plaintext = generate_key()
        return self._store(plaintext, app_id, scopes, name), plaintext

    def import_key(self, plaintext: str, app_id: str, scopes: Iterable[str], name: str = "") -> ApiKey:
        """Store a key made elsewhere (the embedded stack's development key from settings).

        Idempotent: an existing row with the same secret is returned as it is, so a restart
        neither duplicates the key nor brings back one that was revoked.
        """
        parsed = parse_key(plaintext)
        if parsed is None:
            raise ValueError("not an API key: expected lk_<12 characters>_<43 characters>")
        key_id, secret = parsed
        existing = self._fetch(key_id)
        if existing is not None:
            if not hmac.compare_digest(existing.key_hash, _hash(secret)):
                raise ValueError(f"key id {key_id} already exists with a different secret")
            return existing.key
        return self._store(plaintext, app_id, scopes, name)

    def _store(self, plaintext: str, app_id: str, scopes: Iterable[str], name: str) -> ApiKey:
        if app_id != ALL_APPS and not _APP_ID.match(app_id):
            raise ValueError(f"app_id must be '*' or a valid app id, got {app_id!r}")
        scope_set = frozenset(scopes)
        if not scope_set:
            raise ValueError(f"a key needs at least one scope of {', '.join(SCOPES)}")
        for scope in scope_set:
            _check_scope(scope)
        key_id, secret = parse_key(plaintext) or ("", "")
        now = datetime.now(UTC)
        created_at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # the column keeps ms
        key = ApiKey(key_id, app_id, scope_set, name, created_at)
        row = _Row(key, _hash(secret), time.time_ns())
        self._insert(row)
        self._remember(key_id, row)
        with self._write_lock:
            if self._ids is not None and self._ids[0] is not None:
                self._ids[0].add(key_id)
        return key

    def revoke(self, key_id: str) -> bool:
        """Mark the key revoked; False when there is no such key. Other processes see it
        within their cache TTL; this one at once."""
        row = self._fetch(key_id)
        if row is None:
            return False
        if not row.key.revoked:
            revoked = _Row(
                ApiKey(row.key.key_id, row.key.app_id, row.key.scopes, row.key.name, row.key.created_at, True),
                row.key_hash,
                max(time.time_ns(), row.version + 1),
            )
            self._insert(revoked)
        with self._write_lock:
            self._known.pop(key_id, None)
        return True

    def _insert(self, row: _Row) -> None:
        k = row.key
        values = [k.key_id, row.key_hash, k.app_id, sorted(k.scopes), k.name, k.created_at, int(k.revoked), row.version]
        with self._db_lock:
            self._client.insert("api_keys", [values], column_names=_COLUMNS)

    # -- reading -------------------------------------------------------------------------

    def verify(self, plaintext: str | None) -> ApiKey | None:
        """The key, when `plaintext` is a well-formed, known, unrevoked key; else None."""
        parsed = parse_key(plaintext) if plaintext else None
        if parsed is None:
            return None
        key_id, secret = parsed
        row = self._lookup(key_id)
        if row is None or not hmac.compare_digest(row.key_hash, _hash(secret)) or row.key.revoked:
            return None
        return row.key

    def list(self, app_id: str | None = None) -> list[ApiKey]:
        """Every key (revoked ones flagged), oldest first; only keys bound to `app_id` when given."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM api_keys FINAL"
        parameters: dict[str, str] = {}
        if app_id is not None:
            sql += " WHERE app_id = {app_id:String}"
            parameters["app_id"] = app_id
        sql += " ORDER BY created_at, key_id"
        with self._db_lock:
            rows = self._client.query(sql, parameters=parameters).result_rows
        return [_row(values).key for values in rows]

    def _lookup(self, key_id: str) -> _Row | None:
        now = self._clock()
        known = self._known.get(key_id)
        if known is not None and known[0] > now:
            return known[1]
        unknown_until = self._unknown.get(key_id)
        if unknown_until is not None and unknown_until > now:
            return None
        if known is not None:  # a key whose TTL ran out: re-read it, the id set cannot say more
            return cast("_Row | None", self._once(key_id, lambda: self._fetch_and_remember(key_id), known[1]))
        ids = self._key_ids(now)
        if ids is not None and key_id not in ids and not self._take_miss_token(now):
            return None
        return cast("_Row | None", self._once(key_id, lambda: self._fetch_and_remember(key_id), _NO_STALE))

    def _take_miss_token(self, now: float) -> bool:
        with self._write_lock:
            tokens, then = self._miss_tokens
            tokens = min(self._miss_rate, tokens + (now - then) * self._miss_rate)
            if tokens < 1:
                self._miss_tokens = (tokens, now)
                return False
            self._miss_tokens = (tokens - 1, now)
            return True

    def _key_ids(self, now: float) -> set[str] | None:
        current = self._ids
        if current is not None and current[1] > now:
            return current[0]
        # Flight name "": never a key id (those are 12 characters).
        return cast("set[str] | None", self._once("", self._load_ids, current[0] if current is not None else _NO_STALE))

    def _load_ids(self) -> set[str] | None:
        with self._db_lock:
            rows = self._client.query(
                "SELECT DISTINCT key_id FROM api_keys LIMIT {n:UInt64}", parameters={"n": self._ids_max + 1}
            ).result_rows
        ids = {r[0] for r in rows} if len(rows) <= self._ids_max else None
        with self._write_lock:
            self._ids = (ids, self._clock() + self._negative_ttl)
        return ids

    def _once(self, name: str, fetch: Callable[[], object], stale: object) -> object:
        """fetch(), run by one thread however many miss `name` at once; the others wait for
        its result, or get `stale` at once when there is one."""
        with self._write_lock:
            flight = self._flights.get(name)
            leader = flight is None
            if leader:
                flight = self._flights[name] = _Flight()
        if not leader:
            if stale is not _NO_STALE:
                return stale
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = fetch()
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._write_lock:
                self._flights.pop(name, None)
            flight.done.set()

    def _fetch_and_remember(self, key_id: str) -> _Row | None:
        row = self._fetch(key_id)
        self._remember(key_id, row)
        if row is not None:
            with self._write_lock:
                if self._ids is not None and self._ids[0] is not None:
                    self._ids[0].add(key_id)
        return row

    def _remember(self, key_id: str, row: _Row | None) -> None:
        now = self._clock()
        with self._write_lock:
            self._known.pop(key_id, None)
            self._unknown.pop(key_id, None)
            if row is None:
                self._unknown[key_id] = now + self._negative_ttl
                while len(self._unknown) > self._negative_size:
                    self._unknown.popitem(last=False)
            else:
                self._known[key_id] = (now + self._ttl, row)
                while len(self._known) > self._size:
                    self._known.popitem(last=False)

    def _fetch(self, key_id: str) -> _Row | None:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM api_keys FINAL WHERE key_id = {{key_id:String}}"
        with self._db_lock:
            rows = self._client.query(sql, parameters={"key_id": key_id}).result_rows
        return _row(rows[0]) if rows else None


def _row(values: Sequence) -> _Row:
    key_id, key_hash, app_id, scopes, name, created_at, revoked, version = values
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return _Row(ApiKey(key_id, app_id, frozenset(scopes), name, created_at, bool(revoked)), key_hash, int(version))
