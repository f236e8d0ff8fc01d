import hashlib
import threading
from datetime import UTC, datetime

import pytest

from lookout.core.auth import ApiKey, ApiKeyStore, Forbidden, Unauthorized, authorize, generate_key, parse_key


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


def test_an_unknown_key_is_cached_too_until_the_ttl_passes(ch):
    clock = FakeClock()
    ingest = ApiKeyStore(ch, cache_ttl_s=10, clock=clock)
    plaintext = generate_key()
    assert ingest.verify(plaintext) is None  # negative result cached

    ApiKeyStore(ch).import_key(plaintext, "shop", ["ingest"])
    assert ingest.verify(plaintext) is None
    clock.now += 11
    assert ingest.verify(plaintext) is not None


def test_the_cache_is_bounded_and_drops_the_least_recently_used_key(ch):
    clock = FakeClock()
    store = ApiKeyStore(ch, cache_size=2, clock=clock)
    first = generate_key()
    for plaintext in (first, generate_key(), generate_key()):
        store.verify(plaintext)
    ApiKeyStore(ch).import_key(first, "shop", ["ingest"])
    # `first` was evicted, so its negative result is gone and the new row is read at once.
    assert store.verify(first) is not None


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
