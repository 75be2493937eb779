"""Issue 16, class 7: Argon2id at OWASP's parameters; old scrypt hashes verify and are replaced on
the next successful login."""

from __future__ import annotations

import base64
import hashlib

import pytest

from conduit.identity import login as identity

from conduit.identity import passwords
from conduit.platform.errors import ConduitError
from conduit.repositories.users import UsersRepository


def scrypt_hash(password: str) -> str:
    """A hash as the previous version stored it."""
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32, maxmem=64 * 1024 * 1024)
    return f"scrypt${2**14}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def test_new_hashes_are_argon2id_at_owasp_parameters():
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify_password("correct horse battery", stored)
    assert not passwords.verify_password("correct horse batterY", stored)
    assert not passwords.needs_rehash(stored)


def test_legacy_hashes_verify_and_need_a_rehash():
    stored = scrypt_hash("old password")
    assert passwords.verify_password("old password", stored) and not passwords.verify_password("other", stored)
    assert passwords.needs_rehash(stored)
    weaker = passwords.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("x")
    assert passwords.needs_rehash(weaker) and passwords.verify_password("x", weaker)


@pytest.mark.parametrize("stored", ["", "scrypt$1$2", "scrypt$x$8$1$AAAA$AAAA", "$argon2id$v=19$garbage", "plain"])
def test_a_malformed_stored_hash_never_matches(stored):
    assert passwords.verify_password("anything", stored) is False


def test_a_login_replaces_a_legacy_hash_and_a_failed_one_does_not(aws):
    user_id = identity.register("legacy@example.com", "old password here", None).user.id
    UsersRepository().update_user(user_id, passwordHash=scrypt_hash("old password here"))
    with pytest.raises(ConduitError):
        identity.login("legacy@example.com", "wrong password here")
    assert UsersRepository().get_user(user_id).password_hash.startswith("scrypt$")
    identity.login("legacy@example.com", "old password here")
    rehashed = UsersRepository().get_user(user_id).password_hash
    assert rehashed.startswith("$argon2id$")
    identity.login("legacy@example.com", "old password here")
    assert UsersRepository().get_user(user_id).password_hash == rehashed  # not rehashed again


def test_a_rehash_never_overwrites_a_password_changed_meanwhile(aws):
    user_id = identity.register("race@example.com", "first password", None).user.id
    current = UsersRepository().get_user(user_id).password_hash
    assert not UsersRepository().replace_password_hash(user_id, "some older hash", "new")
    assert UsersRepository().get_user(user_id).password_hash == current
