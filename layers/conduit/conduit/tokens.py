"""Access tokens (JWT, HS256 pinned) and opaque refresh tokens.

The signing key is a Secrets Manager secret, fetched through Powertools
Parameters and cached for five minutes per execution environment. The local
stack creates that secret (with a random value) in its emulator, so local and
AWS runs take the same path.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

import jwt
from aws_lambda_powertools.utilities import parameters

from conduit.errors import ConduitError
from conduit.settings import get_settings

ALGORITHM = "HS256"  # pinned: a token naming any other algorithm (none included) is refused
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "sid"]
MAX_TOKEN_LENGTH = 4096


def _signing_key() -> str:
    return parameters.get_secret(get_settings().jwt_secret_id, max_age=300)


def issue_access_token(user_id: str, session_id: str, now: datetime) -> tuple[str, int]:
    settings = get_settings()
    claims = {
        "sub": user_id,
        "sid": session_id,
        "iat": now,
        "exp": now + timedelta(seconds=settings.access_token_ttl_seconds),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    return jwt.encode(claims, _signing_key(), algorithm=ALGORITHM), settings.access_token_ttl_seconds


def verify_access_token(token: str) -> dict[str, Any]:
    """The token's claims, or INVALID_TOKEN / TOKEN_EXPIRED. The signature is checked before expiry."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise ConduitError("INVALID_TOKEN")
    settings = get_settings()
    try:
        return jwt.decode(
            token,
            _signing_key(),
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise ConduitError("TOKEN_EXPIRED") from None
    except jwt.PyJWTError:
        raise ConduitError("INVALID_TOKEN") from None


def new_refresh_token() -> str:
    return f"rt_{secrets.token_urlsafe(48)}"


def refresh_token_digest(token: str) -> str:
    """Refresh tokens are stored only as their SHA-256: a table dump reveals none."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
