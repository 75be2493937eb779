"""API keys (API.md §13): long-lived bearer credentials for server-to-server clients.

A key is `cdk_` + 24 hex chars of its id + 24 hex chars of its maker's id + 43
URL-safe random chars (256 bits). The ids in clear let the gate read the key
with the user and the account in its one BatchGetItem; the random part is the
secret. Only the key's SHA-256 is stored: a key has 256 bits of entropy, so a
fast hash is enough (a slow KDF guards low-entropy passwords, not this), and
the digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Self

from pydantic import Field

from conduit.platform.errors import ConduitError
from conduit.platform.ids import iso, new_id, parse_iso, utc_now
from conduit.repositories.api_keys import ApiKey, ApiKeysRepository
from conduit.repositories.base import Page
from conduit.platform.tiers import get_tiers
from conduit.platform.views import View

KEY_PREFIX = "cdk_"
_KEY_PATTERN = re.compile(r"^cdk_(?P<key>[0-9a-f]{24})(?P<user>[0-9a-f]{24})(?P<secret>[A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """What an authenticated key (or an OAuth grant of /mcp) allows: acting as its maker on the
    account it names, within `scopes` (None: everything the maker may do there)."""

    key_id: str
    account_id: str
    scopes: frozenset[str] | None = None

    def allows(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes


def is_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_key(key: str) -> tuple[str, str]:
    """(keyId, userId) named by a key; INVALID_TOKEN if it is not shaped like one."""
    match = _KEY_PATTERN.match(key)
    if match is None:
        raise ConduitError("INVALID_TOKEN")
    return f"key_{match['key']}", f"usr_{match['user']}"


def check_key(key: str, item: dict[str, Any] | None) -> KeyGrant:
    """The grant of a presented key, given its stored item (live or revoked), or the 401 that says why not."""
    stored = ApiKey.from_item(item) if item else None
    if stored is None or not hmac.compare_digest(stored.key_hash, key_digest(key)):
        raise ConduitError("INVALID_TOKEN")
    if stored.revoked:
        raise ConduitError("TOKEN_REVOKED", "This API key has been revoked")
    if stored.expires_at is not None and parse_iso(stored.expires_at) <= utc_now():
        raise ConduitError("TOKEN_EXPIRED", "This API key has expired")
    return KeyGrant(key_id=stored.id, account_id=stored.account_id)


class ApiKeyView(View):
    """An API key as listed: never the key itself."""

    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it; never enough to use it")
    accountId: str = Field(description="The account the key acts on: its maker's own, or a workspace")
    createdAt: str
    expiresAt: str | None = Field(description="null: the key does not expire")

    @classmethod
    def of(cls, stored: ApiKey, **more: Any) -> Self:
        return cls(
            id=stored.id,
            name=stored.name,
            prefix=stored.prefix,
            accountId=stored.account_id,
            createdAt=stored.created_at,
            expiresAt=stored.expires_at,
            **more,
        )


class NewApiKey(ApiKeyView):
    key: str = Field(description="`cdk_…`: shown only in this answer; send it as `Authorization: Bearer cdk_…`")


def create_key(user_id: str, account_id: str, tier: str, name: str, expires_in_days: int | None) -> dict[str, Any]:
    """A new key on `account_id`, counted against that account's tier; the key itself is in this answer only."""
    key_id = new_id("key")
    secret = secrets.token_urlsafe(32)
    key = f"{KEY_PREFIX}{key_id.removeprefix('key_')}{user_id.removeprefix('usr_')}{secret}"
    now = utc_now()
    stored = ApiKey(
        id=key_id,
        user_id=user_id,
        account_id=account_id,
        name=name,
        prefix=key[:12],
        key_hash=key_digest(key),
        created_at=iso(now),
        expires_at=iso(now + timedelta(days=expires_in_days)) if expires_in_days is not None else None,
    )
    ApiKeysRepository().create(stored, get_tiers().tier(tier).limit("apiKeys"))
    return NewApiKey.of(stored, key=key).body()


def list_keys(user_id: str, limit: int, cursor: str | None) -> Page:
    page = ApiKeysRepository().list_keys(user_id, limit, cursor)
    return Page(items=[ApiKeyView.of(key).body() for key in page.items], next_cursor=page.next_cursor)


def revoke_key(user_id: str, key_id: str) -> None:
    repository = ApiKeysRepository()
    key = repository.get_key(user_id, key_id) if key_id.startswith("key_") else None
    if key is None:
        raise ConduitError("NOT_FOUND", "No API key with this id")
    repository.revoke(key, iso(utc_now()))
