"""Password hashing with scrypt (memory-hard, stdlib) and a per-user random salt."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import cache

# 2**14 x 8 x 1 uses 16 MiB and ~50 ms: costly to brute-force, cheap enough for Lambda.
_N, _R, _P, _KEY_BYTES = 2**14, 8, 1, 32
_MAX_MEMORY = 64 * 1024 * 1024


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES, maxmem=_MAX_MEMORY)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(_derive(password, salt, _N, _R, _P))}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison of the derived key with the stored one."""
    _, n, r, p, salt, expected = stored.split("$")
    derived = _derive(password, base64.b64decode(salt), int(n), int(r), int(p))
    return hmac.compare_digest(derived, base64.b64decode(expected))


@cache
def dummy_hash() -> str:
    """Verified against when the email is unknown, so an unknown email costs the same
    time as a wrong password. Made on first use, not at import: a cold start need not pay."""
    return hash_password(secrets.token_urlsafe(16))
