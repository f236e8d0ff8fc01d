"""Feedback tokens and password hashes, without a broker."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid

import pytest
from argon2 import PasswordHasher

from lookout.feedback import accounts, tokens

SECRET = "0123456789abcdef-secret"


def test_a_token_names_its_call_app_and_author_until_it_expires():
    event_id = uuid.uuid4()
    token, _ = tokens.mint(SECRET, event_id, "shop", "u|1", 60, now=1000)
    claims = tokens.verify(SECRET, token, now=1059)
    assert (claims.event_id, claims.app_id, claims.author, claims.expires) == (event_id, "shop", "u|1", 1060)
    with pytest.raises(tokens.BadToken, match="expired"):
        tokens.verify(SECRET, token, now=1060)


@pytest.mark.parametrize("mangle", [
    lambda t: t.replace("v1.", "v2.", 1),
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
    lambda t: t.split(".")[0] + "." + t.split(".")[1][::-1] + "." + t.split(".")[2],
    lambda t: "",
    lambda t: "v1..",
    lambda t: t[:-1] + "\xe9",  # non-ASCII (a header byte above 0x7f): refused, never a TypeError
    lambda t: "v1.\xe9\xff.\xe9",
])
def test_forged_or_malformed_tokens_are_refused(mangle):
    token, _ = tokens.mint(SECRET, uuid.uuid4(), "shop", "u", 60)
    with pytest.raises(tokens.BadToken):
        tokens.verify(SECRET, mangle(token))


def test_a_token_signed_with_another_secret_is_refused():
    token, _ = tokens.mint("another-secret-0123456", uuid.uuid4(), "shop", "u", 60, now=time.time())
    with pytest.raises(tokens.BadToken, match="signature"):
        tokens.verify(SECRET, token)


def test_passwords_are_salted_argon2id_and_old_scrypt_hashes_still_check():
    h1, h2 = accounts.hash_password("correct horse"), accounts.hash_password("correct horse")
    assert h1 != h2 and h1.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert accounts.check_password("correct horse", h1)
    assert not accounts.check_password("correct horsE", h1)
    assert not accounts.check_password("x", "not-a-hash")
    assert not accounts.needs_rehash(h1)
    # A hash made before argon2id (scrypt n=2**14) verifies, and asks to be replaced.
    legacy = _scrypt("correct horse")
    assert accounts.check_password("correct horse", legacy) and not accounts.check_password("wrong", legacy)
    assert accounts.needs_rehash(legacy)
    # So does an argon2 hash of a lower cost than today's.
    assert accounts.needs_rehash(PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("x"))
    # A stored scrypt hash that asks for absurd work is refused rather than computed.
    assert not accounts.check_password("correct horse", legacy.replace("$16384$", f"${2**24}$", 1))


def _scrypt(password: str) -> str:
    """A hash as this service made them before argon2id."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
