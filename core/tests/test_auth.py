import hashlib
import threading
import time
from datetime import UTC, datetime
from typing import cast

import pytest
from clickhouse_connect.driver.client import Client

from lookout.core.auth import ApiKey, ApiKeyStore, Forbidden, Unauthorized, authorize, generate_key, parse_key


def as_client(watched: "WatchedClient") -> Client:
    """The stand-in where a Client is expected: it forwards every call to the real one."""
    return cast(Client, watched)


class WatchedClient:
    """The real ClickHouse client, counting the queries made through it; `hold()` makes
    queries wait until `release()` (a ClickHouse that stopped answering)."""

    def __init__(self, client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()
        self.queries = 0
        self.waiting = 0

    def query(self, *args, **kwargs):
        with self._lock:
            self.queries += 1
            self.waiting += 1
        try:
            assert self._open.wait(30), "held query never released"
        finally:
            with self._lock:
                self.waiting -= 1
        return self._client.query(*args, **kwargs)

    def insert(self, *args, **kwargs):
        return self._client.insert(*args, **kwargs)

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def wait_for_waiting(self, n: int, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while self.waiting < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


class FakeClock:
    """A clock the test moves by hand (time itself, not a component, is what is replaced)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _key(app_id: str, *scopes: str, revoked: bool = False) -> ApiKey:
    return ApiKey("k" * 12, app_id, frozenset(scopes), "test", datetime.now(UTC), revoked)


# -- key format and storage -------------------------------------------------------------



def _parts(plaintext: str) -> tuple[str, str]:
    parsed = parse_key(plaintext)
    assert parsed is not None, plaintext
    return parsed

def test_a_key_reads_lk_then_a_12_character_id_then_the_secret():
    plaintext = generate_key()
    key_id, secret = _parts(plaintext)
    assert plaintext == f"lk_{key_id}_{secret}"
    assert len(key_id) == 12 and len(secret) == 43
    assert generate_key() != plaintext


def test_a_key_id_is_letters_and_digits_so_a_command_line_never_reads_it_as_an_option():
    # A CI run drew the id "-hHU71Q8Y9z8", and `lookout keys revoke -hHU71Q8Y9z8` was read as -h.
    ids = [_parts(generate_key())[0] for _ in range(2000)]
    assert all(key_id.isascii() and key_id.isalnum() for key_id in ids)


def test_a_created_key_verifies_and_carries_its_app_scopes_and_name(ch):
    store = ApiKeyStore(ch)
    key, plaintext = store.create("shop", ["ingest", "read"], name="shop backend")
    assert plaintext.startswith(f"lk_{key.key_id}_")

    verified = ApiKeyStore(ch).verify(plaintext)  # a fresh store: read from ClickHouse, not the cache
    assert verified == key
    assert verified is not None
    assert verified.app_id == "shop"
    assert verified.scopes == frozenset({"ingest", "read"})
    assert verified.name == "shop backend"
    assert not verified.revoked


def test_the_stored_row_holds_only_a_hash_of_the_secret(ch):
    key, plaintext = ApiKeyStore(ch).create("shop", ["ingest"])
    _, secret = _parts(plaintext)
    rows = ch.query("SELECT * FROM api_keys WHERE key_id = {k:String}", parameters={"k": key.key_id}).result_rows
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    assert secret not in stored
    assert plaintext not in stored
    key_hash = ch.query(
        "SELECT key_hash FROM api_keys WHERE key_id = {k:String}", parameters={"k": key.key_id}
    ).result_rows[0][0]
    assert key_hash == hashlib.sha256(secret.encode()).hexdigest()


def test_a_wrong_secret_a_malformed_key_or_an_unknown_key_does_not_verify(ch):
    store = ApiKeyStore(ch)
    key, plaintext = store.create("shop", ["ingest"])
    wrong_secret = f"lk_{key.key_id}_{generate_key()[16:]}"
    assert store.verify(wrong_secret) is None
    assert store.verify(generate_key()) is None  # well formed, never created
    for malformed in ["", "lk_", plaintext[:-1], plaintext + "x", "Bearer " + plaintext, "sk-" + plaintext[3:], None]:
        assert store.verify(malformed) is None
    assert store.verify(plaintext) == key


def test_list_shows_keys_without_hashes_and_filters_by_app(ch):
    store = ApiKeyStore(ch)
    shop, _ = store.create("shop", ["ingest"], name="a")
    blog, _ = store.create("blog", ["read"], name="b")
    admin, _ = store.create("*", ["admin"], name="ops")

    assert {k.key_id for k in store.list()} == {shop.key_id, blog.key_id, admin.key_id}
    assert store.list(app_id="shop") == [shop]
    assert all(isinstance(k, ApiKey) and not hasattr(k, "key_hash") for k in store.list())


def test_keys_need_a_known_scope_and_a_valid_app(ch):
    store = ApiKeyStore(ch)
    with pytest.raises(ValueError, match="scope"):
        store.create("shop", [])
    with pytest.raises(ValueError, match="'write'"):
        store.create("shop", ["write"])
    with pytest.raises(ValueError, match="app_id"):
        store.create("bad app!", ["read"])


def test_importing_the_same_development_key_twice_stores_it_once_and_keeps_a_revoke(ch):
    store = ApiKeyStore(ch)
    plaintext = generate_key()
    key = store.import_key(plaintext, "*", ["admin"], name="dev")
    assert store.verify(plaintext) == key
    assert store.import_key(plaintext, "*", ["admin"], name="dev") == key
    assert len(store.list()) == 1

    store.revoke(key.key_id)
    assert store.import_key(plaintext, "*", ["admin"], name="dev").revoked
    assert store.verify(plaintext) is None
    key_id, _ = _parts(plaintext)
    with pytest.raises(ValueError, match="different secret"):
        store.import_key(f"lk_{key_id}_{generate_key()[16:]}", "*", ["admin"])


# -- revoking and the cache -------------------------------------------------------------


def test_a_revoked_key_stops_verifying_at_once_in_the_revoking_process(ch):
    store = ApiKeyStore(ch)
    key, plaintext = store.create("shop", ["ingest"])
    assert store.verify(plaintext) == key
    assert store.revoke(key.key_id) is True
    assert store.verify(plaintext) is None
    assert [k.revoked for k in store.list()] == [True]
    assert store.revoke("nosuchkey123") is False


def test_a_revoke_made_elsewhere_takes_effect_once_the_cache_ttl_has_passed(ch):
    clock = FakeClock()
    ingest = ApiKeyStore(ch, cache_ttl_s=10, clock=clock)
    admin_process = ApiKeyStore(ch)
    key, plaintext = admin_process.create("shop", ["ingest"])

    assert ingest.verify(plaintext) == key  # now cached
    admin_process.revoke(key.key_id)
    clock.now += 9
    assert ingest.verify(plaintext) == key  # still within the TTL
    clock.now += 2
    assert ingest.verify(plaintext) is None


def test_a_key_created_elsewhere_verifies_at_once(ch):
    ingest = ApiKeyStore(ch)
    assert ingest.verify(generate_key()) is None  # the id set is read now
    key, plaintext = ApiKeyStore(ch).create("shop", ["ingest"])  # another process, just after
    assert ingest.verify(plaintext) == key


def test_under_a_flood_a_new_key_verifies_once_the_id_set_is_read_again(ch):
    clock = FakeClock()
    ingest = ApiKeyStore(ch, negative_ttl_s=2, clock=clock)
    for _ in range(100):  # spends the miss budget
        ingest.verify(generate_key())
    key, plaintext = ApiKeyStore(ch).create("shop", ["ingest"])
    assert ingest.verify(plaintext) is None
    clock.now += 3
    assert ingest.verify(plaintext) == key


def test_an_unknown_key_stays_unknown_until_the_negative_ttl_passes(ch):
    clock = FakeClock()
    ingest = ApiKeyStore(ch, cache_ttl_s=10, negative_ttl_s=2, clock=clock)
    plaintext = generate_key()
    assert ingest.verify(plaintext) is None

    ApiKeyStore(ch).import_key(plaintext, "shop", ["ingest"])  # created by another process
    assert ingest.verify(plaintext) is None
    clock.now += 3  # the negative TTL is shorter than the positive one: new keys work soon
    assert ingest.verify(plaintext) is not None


def test_a_flood_of_random_keys_never_evicts_a_valid_key_nor_queries_per_key(ch):
    watched = WatchedClient(ch)
    store = ApiKeyStore(as_client(watched), cache_size=10, clock=FakeClock())
    key, plaintext = store.create("shop", ["ingest"])
    assert store.verify(plaintext) == key

    before = watched.queries
    for _ in range(50_000):
        assert store.verify(generate_key()) is None
    # The stored key ids, read once, and the miss budget's burst: no query per random key.
    assert watched.queries - before <= 1 + 20

    before = watched.queries
    assert store.verify(plaintext) == key
    assert watched.queries == before  # still cached: verified with zero ClickHouse queries


def test_without_the_id_set_misses_go_to_a_separate_bounded_negative_cache(ch):
    clock = FakeClock()
    watched = WatchedClient(ch)
    # known_ids_max=0: more keys than the id set may hold, so every new id is queried.
    store = ApiKeyStore(
        as_client(watched), cache_size=10, negative_size=100, negative_ttl_s=2, known_ids_max=0, clock=clock
    )
    key, plaintext = store.create("shop", ["ingest"])
    assert store.verify(plaintext) == key

    flood = [generate_key() for _ in range(300)]
    for bogus in flood:
        assert store.verify(bogus) is None
    assert len(store._unknown) == 100  # bounded: the oldest misses were dropped
    before = watched.queries
    assert store.verify(plaintext) == key
    assert store.verify(flood[-1]) is None  # a repeated miss within the TTL: no query either
    assert watched.queries == before
    clock.now += 3
    assert store.verify(flood[-1]) is None
    assert watched.queries == before + 2  # asked again: is the id set still too big, is the id there


def test_the_cache_of_valid_keys_is_bounded_and_drops_its_oldest_entry(ch):
    watched = WatchedClient(ch)
    store = ApiKeyStore(as_client(watched), cache_size=2, clock=FakeClock())
    made = [store.create("shop", ["ingest"]) for _ in range(3)]
    assert len(store._known) == 2
    before = watched.queries
    assert [store.verify(plaintext) for _, plaintext in made[1:]] == [key for key, _ in made[1:]]
    assert watched.queries == before  # the two newest are cached
    assert store.verify(made[0][1]) == made[0][0]  # the oldest was dropped and is read again
    assert watched.queries > before


def test_malformed_keys_never_reach_clickhouse(ch):
    watched = WatchedClient(ch)
    store = ApiKeyStore(as_client(watched))
    for malformed in ["", "lk_", "lk_" + "a" * 12, "lk_" + "é" * 12 + "_" + "a" * 43, "x" * 100_000, None]:
        assert store.verify(malformed) is None
    assert watched.queries == 0


def test_a_cached_key_verifies_while_misses_are_held_up_in_clickhouse(ch):
    watched = WatchedClient(ch)
    store = ApiKeyStore(as_client(watched), known_ids_max=0)  # every miss queries ClickHouse
    key, plaintext = store.create("shop", ["ingest"])
    assert store.verify(plaintext) == key

    watched.hold()  # ClickHouse stops answering
    misses = [threading.Thread(target=store.verify, args=(generate_key(),)) for _ in range(8)]
    for t in misses:
        t.start()
    assert watched.wait_for_waiting(1)  # a miss is inside its query, the others queue behind it

    answer: list = []
    hit = threading.Thread(target=lambda: answer.append(store.verify(plaintext)))
    hit.start()
    hit.join(10)
    assert answer == [key]  # verified while every miss is still held
    assert all(t.is_alive() for t in misses)

    watched.release()
    for t in misses:
        t.join(10)
    assert not any(t.is_alive() for t in misses)


def test_concurrent_misses_of_one_key_id_share_one_query(ch):
    watched = WatchedClient(ch)
    store = ApiKeyStore(as_client(watched), known_ids_max=0)  # every new id is queried
    store.create("shop", ["ingest"])
    assert store.verify(generate_key()) is None  # the id set read (and found too big)
    bogus = generate_key()
    results: list = []
    before = watched.queries
    watched.hold()
    threads = [threading.Thread(target=lambda: results.append(store.verify(bogus))) for _ in range(10)]
    for t in threads:
        t.start()
    assert watched.wait_for_waiting(1)
    watched.release()
    for t in threads:
        t.join(10)
    assert results == [None] * 10
    assert watched.queries == before + 1  # one query for ten callers


def test_an_expired_key_keeps_verifying_for_others_while_one_thread_reads_it_again(ch):
    clock = FakeClock()
    watched = WatchedClient(ch)
    store = ApiKeyStore(as_client(watched), cache_ttl_s=10, clock=clock)
    key, plaintext = store.create("shop", ["ingest"])
    assert store.verify(plaintext) == key
    clock.now += 11

    watched.hold()
    refresher = threading.Thread(target=store.verify, args=(plaintext,))
    refresher.start()
    assert watched.wait_for_waiting(1)
    answers: list = []
    others = [threading.Thread(target=lambda: answers.append(store.verify(plaintext))) for _ in range(5)]
    for t in others:
        t.start()
    for t in others:
        t.join(10)
    assert answers == [key] * 5  # served the previous row without waiting for the refresh
    watched.release()
    refresher.join(10)
    assert watched.queries == 1


def test_verify_is_safe_from_many_threads(ch):
    store = ApiKeyStore(ch, cache_ttl_s=0)  # every call goes to ClickHouse
    keys = [store.create("shop", ["ingest"]) for _ in range(4)]
    errors: list[BaseException] = []
    results: list[bool] = []

    def work(key: ApiKey, plaintext: str) -> None:
        try:
            for _ in range(10):
                results.append(store.verify(plaintext) == key)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=pair) for pair in keys * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [True] * 80


# -- scopes and apps --------------------------------------------------------------------


def test_a_key_allows_its_scopes_on_its_app_only():
    key = _key("shop", "ingest", "feedback")
    assert key.allows("ingest", "shop")
    assert key.allows("feedback")
    assert not key.allows("read", "shop")
    assert not key.allows("ingest", "blog")


def test_admin_implies_every_scope_and_star_means_every_app():
    admin = _key("*", "admin")
    assert all(admin.allows(scope, "any-app") for scope in ("ingest", "read", "feedback", "review", "admin"))
    reader = _key("*", "read")
    assert reader.allows("read", "shop") and reader.allows("read", "blog")
    assert not reader.allows("review", "shop")
    bound_admin = _key("shop", "admin")
    assert bound_admin.allows("review", "shop")
    assert not bound_admin.allows("review", "blog")


def test_a_revoked_key_allows_nothing_and_an_unknown_scope_is_a_programming_error():
    assert not _key("*", "admin", revoked=True).allows("read")
    with pytest.raises(ValueError, match="unknown scope"):
        _key("*", "admin").allows("write")


def test_authorize_says_401_without_a_valid_key_and_403_with_the_wrong_scope_or_app():
    with pytest.raises(Unauthorized) as missing:
        authorize(None, "ingest", "shop")
    assert missing.value.status_code == 401
    with pytest.raises(Unauthorized):
        authorize(_key("shop", "ingest", revoked=True), "ingest", "shop")

    with pytest.raises(Forbidden, match="'review' scope") as scope:
        authorize(_key("shop", "ingest"), "review", "shop")
    assert scope.value.status_code == 403
    with pytest.raises(Forbidden, match=r"bound to app 'shop'.*'blog'"):
        authorize(_key("shop", "ingest"), "ingest", "blog")

    authorize(_key("shop", "ingest"), "ingest", "shop")
    authorize(_key("*", "admin"), "review", "blog")
