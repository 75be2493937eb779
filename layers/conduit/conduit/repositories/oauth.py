"""Conduit's OAuth authorization server (API.md §12.2): registered clients, authorization codes
and grants (TABLE.md rows: OAuth client, authorization code, OAuth grant)."""

from __future__ import annotations

from typing import Any

from conduit.repositories.base import Repository, to_item


def grant_sk(grant_id: str) -> str:
    return f"OAUTHGRANT#{grant_id}"


class OAuthRepository(Repository):
    # --- clients (RFC 7591) ------------------------------------------------------
    def put_client(self, client: dict[str, Any]) -> None:
        item = {"PK": f"OAUTHCLIENT#{client['clientId']}", "SK": "CLIENT", **client}
        self.client.put_item(TableName=self.table_name, Item=to_item(item), ConditionExpression="attribute_not_exists(PK)")

    def get_client(self, client_id: str) -> dict[str, Any] | None:
        return self.get(f"OAUTHCLIENT#{client_id}", "CLIENT")

    # --- authorization codes ----------------------------------------------------
    def put_code(self, digest: str, code: dict[str, Any]) -> None:
        item = {"PK": f"OAUTHCODE#{digest}", "SK": "CODE", **code}
        self.client.put_item(TableName=self.table_name, Item=to_item(item), ConditionExpression="attribute_not_exists(PK)")

    def claim_code(self, digest: str, used_at: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Mark a code used, once: (the code, None) the first time; (None, the code as stored) when it
        was used before (a replay); (None, None) when there is no such code."""
        claimed = self.update_where(
            {"PK": f"OAUTHCODE#{digest}", "SK": "CODE"},
            {"usedAt": used_at},
            condition="attribute_exists(PK) AND attribute_not_exists(usedAt)",
        )
        if claimed is not None:
            return claimed, None
        return None, self.get(f"OAUTHCODE#{digest}", "CODE")

    # --- grants: one per consent, holding its current refresh token's digest -----
    def put_grant(self, grant: dict[str, Any]) -> None:
        item = {"PK": f"USER#{grant['userId']}", "SK": grant_sk(grant["grantId"]), **grant}
        self.client.put_item(TableName=self.table_name, Item=to_item(item), ConditionExpression="attribute_not_exists(PK)")

    def get_grant(self, user_id: str, grant_id: str) -> dict[str, Any] | None:
        return self.get(f"USER#{user_id}", grant_sk(grant_id))

    def rotate_refresh(self, user_id: str, grant_id: str, old_digest: str, new_digest: str, expires_epoch: int) -> bool:
        """Swap the grant's refresh token, only from the one presented and only while it is not revoked."""
        return (
            self.update_where(
                {"PK": f"USER#{user_id}", "SK": grant_sk(grant_id)},
                {"refreshDigest": new_digest, "expiresAt": expires_epoch},
                condition="refreshDigest = :old AND revoked = :no",
                condition_values={":old": old_digest, ":no": False},
            )
            is not None
        )

    def revoke_grant(self, user_id: str, grant_id: str, revoked_at: str) -> None:
        """Revoked for good: its access tokens stop at the next request, its refresh token never works again."""
        self.update_where(
            {"PK": f"USER#{user_id}", "SK": grant_sk(grant_id)}, {"revoked": True, "revokedAt": revoked_at}
        )
