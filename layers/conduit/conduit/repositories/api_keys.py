"""API keys (TABLE.md rows: API key, revoked API key).

A key lives in its maker's partition, `USER#<userId>` / `APIKEY#<keyId>`, so the
gate reads it in the same BatchGetItem as the user and the personal account.
Revoking moves it to `REVOKEDKEY#<keyId>` (same transaction as the counter going
down): the gate then answers TOKEN_REVOKED, not INVALID_TOKEN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conduit.platform.errors import ConduitError
from conduit.repositories.counters import create_counted, delete_counted
from conduit.repositories.base import ConditionsFailed, Page, Repository, to_item


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    user_id: str
    account_id: str
    name: str
    prefix: str
    key_hash: str
    created_at: str
    expires_at: str | None
    revoked: bool = False

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ApiKey:
        return cls(
            id=item["keyId"],
            user_id=item["userId"],
            account_id=item["accountId"],
            name=item["name"],
            prefix=item["prefix"],
            key_hash=item["keyHash"],
            created_at=item["createdAt"],
            expires_at=item.get("keyExpiresAt"),
            revoked=item["SK"].startswith("REVOKEDKEY#"),
        )


def key_sk(key_id: str) -> str:
    return f"APIKEY#{key_id}"


def revoked_sk(key_id: str) -> str:
    return f"REVOKEDKEY#{key_id}"


class ApiKeysRepository(Repository):
    def create(self, key: ApiKey, maximum: int | None) -> None:
        """Put the key and count it against its account's `apiKeys` (FEATURE_LIMIT_REACHED over the tier's)."""
        item = {
            "PK": f"USER#{key.user_id}",
            "SK": key_sk(key.id),
            "keyId": key.id,
            "userId": key.user_id,
            "accountId": key.account_id,
            "name": key.name,
            "prefix": key.prefix,
            "keyHash": key.key_hash,
            "createdAt": key.created_at,
        }
        if key.expires_at is not None:
            item["keyExpiresAt"] = key.expires_at  # not `expiresAt`: a TTL purge would turn TOKEN_EXPIRED into INVALID_TOKEN
        put = {"Put": {"TableName": self.table_name, "Item": to_item(item), "ConditionExpression": "attribute_not_exists(PK)"}}
        create_counted(self.client, self.table_name, key.account_id, "apiKeys", maximum, [put])

    def list_keys(self, user_id: str, limit: int, cursor: str | None) -> Page:
        page = self.query_page(f"USER#{user_id}", sk_prefix="APIKEY#", limit=limit, cursor=cursor)
        return Page(items=[ApiKey.from_item(item) for item in page.items], next_cursor=page.next_cursor)

    def get_key(self, user_id: str, key_id: str) -> ApiKey | None:
        item = self.get(f"USER#{user_id}", key_sk(key_id))
        return ApiKey.from_item(item) if item else None

    def revoke(self, key: ApiKey, revoked_at: str) -> None:
        """Delete the live key and leave a tombstone, counting the key's account down, all at once."""
        live = to_item({"PK": f"USER#{key.user_id}", "SK": key_sk(key.id)})
        tombstone = {
            "PK": f"USER#{key.user_id}",
            "SK": revoked_sk(key.id),
            "keyId": key.id,
            "userId": key.user_id,
            "accountId": key.account_id,
            "name": key.name,
            "prefix": key.prefix,
            "keyHash": key.key_hash,
            "createdAt": key.created_at,
            "revokedAt": revoked_at,
        }
        items = [
            {"Delete": {"TableName": self.table_name, "Key": live, "ConditionExpression": "attribute_exists(PK)"}},
            {"Put": {"TableName": self.table_name, "Item": to_item(tombstone)}},
        ]
        try:
            delete_counted(self.client, self.table_name, key.account_id, "apiKeys", items)
        except ConditionsFailed:  # revoked by a parallel request
            raise ConduitError("NOT_FOUND", "No API key with this id") from None
