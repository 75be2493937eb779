"""Access tokens (JWT, HS256 pinned) and opaque refresh tokens.

The signing key is a Secrets Manager secret, fetched through Powertools
Parameters and cached for five minutes per execution environment. The local
stack creates that secret (with a random value) in its emulator, so local and
AWS runs take the same path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from aws_lambda_powertools.utilities import parameters

from conduit.platform.errors import ConduitError
from conduit.platform.settings import get_settings

ALGORITHM = "HS256"  # pinned: a token naming any other algorithm (none included) is refused
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "sid"]
MAX_TOKEN_LENGTH = 4096


def _jwt_without_asymmetric_algorithms() -> ModuleType:
    """PyJWT imports `cryptography` when it can, for its RSA, EC and EdDSA algorithms; the layer has it
    (Authlib needs it), and that import is 50-90 ms of every authenticated function's cold start
    (bench/cold_import.py). Tokens here are HS256 only, so jwt is imported with cryptography hidden;
    whatever needs cryptography later (the OAuth routes) imports it as usual."""
    if "cryptography" in sys.modules:
        import jwt
    else:
        sys.modules["cryptography"] = None  # type: ignore[assignment]  # an import of it fails as not installed
        try:
            import jwt
        finally:
            del sys.modules["cryptography"]
    return jwt


jwt = _jwt_without_asymmetric_algorithms()


def _signing_key() -> str:
    return parameters.get_secret(get_settings().jwt_secret_id, max_age=300)


def issue_access_token(user_id: str, login_id: str, now: datetime) -> tuple[str, int]:
    settings = get_settings()
    claims = {
        "sub": user_id,
        "sid": login_id,
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


# --- access tokens of Conduit's OAuth server, for /mcp only (API.md §12.2) ------------------

MCP_ACCESS_TOKEN_TTL_SECONDS = 3600
MCP_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "gid", "acc", "scope", "client_id"]


def issue_mcp_access_token(
    user_id: str, grant_id: str, account_id: str, scope: str, client_id: str, resource: str, issuer: str, now: datetime
) -> str:
    """Bound to the `/mcp` resource (RFC 8707: `aud` is its URL), so the REST API, which wants its
    own audience, refuses it; `gid` names the grant whose revocation stops it."""
    claims = {
        "sub": user_id,
        "gid": grant_id,
        "acc": account_id,
        "scope": scope,
        "client_id": client_id,
        "jti": secrets.token_urlsafe(12),  # two tokens issued in one second still differ
        "iat": now,
        "exp": now + timedelta(seconds=MCP_ACCESS_TOKEN_TTL_SECONDS),
        "iss": issuer,
        "aud": resource,
    }
    return jwt.encode(claims, _signing_key(), algorithm=ALGORITHM)


def verify_mcp_access_token(token: str, resource: str, issuer: str) -> dict[str, Any]:
    """The claims of an access token issued for `resource`, or INVALID_TOKEN / TOKEN_EXPIRED; a
    REST access token (another audience) is INVALID_TOKEN here."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise ConduitError("INVALID_TOKEN")
    try:
        return jwt.decode(
            token,
            _signing_key(),
            algorithms=[ALGORITHM],
            audience=resource,
            issuer=issuer,
            options={"require": MCP_REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise ConduitError("TOKEN_EXPIRED") from None
    except jwt.PyJWTError:
        raise ConduitError("INVALID_TOKEN") from None


# --- the consent page's ticket: who signed in, for which authorization request --------------

CONSENT_TICKET_TTL_SECONDS = 600
_CONSENT_AUDIENCE = "conduit-oauth-consent"


def issue_consent_ticket(user_id: str, request_digest: str, csrf: str, now: datetime) -> str:
    """Carried by the consent form between sign-in and approval: bound to the person, to the exact
    authorization request and to the browser's CSRF cookie, and short-lived."""
    claims = {"sub": user_id, "req": request_digest, "csrf": csrf, "iat": now, "exp": now + timedelta(seconds=CONSENT_TICKET_TTL_SECONDS), "aud": _CONSENT_AUDIENCE}
    return jwt.encode(claims, _signing_key(), algorithm=ALGORITHM)


def read_consent_ticket(ticket: str, request_digest: str, csrf: str) -> str | None:
    """The user id of a valid ticket for this request and this browser, else None."""
    if len(ticket) > MAX_TOKEN_LENGTH:
        return None
    try:
        claims = jwt.decode(ticket, _signing_key(), algorithms=[ALGORITHM], audience=_CONSENT_AUDIENCE, options={"require": ["exp", "sub", "req", "csrf"]})
    except jwt.PyJWTError:
        return None
    if not (hmac.compare_digest(str(claims["req"]), request_digest) and hmac.compare_digest(str(claims["csrf"]), csrf)):
        return None
    return str(claims["sub"])
