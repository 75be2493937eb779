"""Password hashing: Argon2id at OWASP's parameters (argon2-cffi), per-user random salt.

Hashes made before Argon2id (`scrypt$N$r$p$salt$key`, N=2^14: below OWASP's current minimum) still
verify; `needs_rehash` tells the login to store an Argon2id hash in their place.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP Password Storage Cheat Sheet: Argon2id, m=19 MiB, t=2, p=1. About 25-65 ms to verify here
# (import ~25 ms, only in the functions that hash: auth).
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16)

# The legacy scheme, verify-only.
_SCRYPT_KEY_BYTES = 32
_SCRYPT_MAX_MEMORY = 64 * 1024 * 1024


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Whether the password matches the stored hash (either scheme); constant-time comparison."""
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """True for a legacy scrypt hash or an Argon2 hash made with other parameters."""
    if stored.startswith("scrypt$"):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, expected = stored.split("$")
        derived = hashlib.scrypt(
            password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=_SCRYPT_KEY_BYTES, maxmem=_SCRYPT_MAX_MEMORY,
        )  # fmt: skip
    except ValueError:
        return False
    return hmac.compare_digest(derived, base64.b64decode(expected))


@cache
def dummy_hash() -> str:
    """Verified against when the email is unknown, so an unknown email costs the same
    time as a wrong password. Made on first use, not at import: a cold start need not pay."""
    return hash_password(secrets.token_urlsafe(16))
