"""Users, email claims, login sessions and refresh tokens (TABLE.md rows: user, email claim,
login, refresh token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conduit.platform.errors import ConduitError
from conduit.repositories.base import (
    ConditionsFailed,
    Page,
    Repository,
    from_item,
    set_prefetched,
    to_item,
    update_request,
    write_transaction,
)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str | None
    password_hash: str
    is_admin: bool
    disabled: bool
    token_version: int
    terms_version: str | None
    created_at: str

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> User:
        return cls(
            id=item["userId"],
            email=item["email"],
            name=item.get("name"),
            password_hash=item["passwordHash"],
            is_admin=bool(item.get("isAdmin", False)),
            disabled=bool(item.get("disabled", False)),
            token_version=int(item.get("tokenVersion", 0)),
            terms_version=item.get("termsVersion"),
            created_at=item["createdAt"],
        )


@dataclass(frozen=True, slots=True)
class Login:
    id: str
    token_version: int
    revoked: bool

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Login:
        return cls(id=item["sid"], token_version=int(item["tokenVersion"]), revoked=bool(item.get("revoked", False)))


def _plain_user_key(user_id: str) -> dict[str, str]:
    return {"PK": f"USER#{user_id}", "SK": "PROFILE"}


def _user_key(user_id: str) -> dict[str, Any]:
    return to_item(_plain_user_key(user_id))


def _login_key(user_id: str, login_id: str) -> dict[str, Any]:
    return to_item({"PK": f"USER#{user_id}", "SK": f"LOGIN#{login_id}"})


def _refresh_key(digest: str) -> dict[str, Any]:
    return to_item({"PK": f"REFRESH#{digest}", "SK": "REFRESH"})


class UsersRepository(Repository):
    # --- register ------------------------------------------------------------
    def create(self, user: dict[str, Any], extra_items: list[dict[str, Any]]) -> None:
        """Claim the email, put the user and the extra items (their account) in one transaction."""
        email_claim = {"PK": f"EMAIL#{user['email']}", "SK": "EMAIL", "userId": user["userId"]}
        user_item = {
            "PK": f"USER#{user['userId']}",
            "SK": "PROFILE",
            "GSI1PK": "USERS",
            "GSI1SK": f"{user['createdAt']}#{user['userId']}",
            **user,
        }
        condition = {"ConditionExpression": "attribute_not_exists(PK)"}
        items = [
            {"Put": {"TableName": self.table_name, "Item": to_item(email_claim), **condition}},
            {"Put": {"TableName": self.table_name, "Item": to_item(user_item), **condition}},
            *extra_items,
        ]
        try:
            write_transaction(self.client, items)
        except ConditionsFailed as failed:
            if 0 in failed.indexes:  # the email claim
                raise ConduitError("EMAIL_IN_USE") from None
            raise

    # --- look-ups ------------------------------------------------------------
    def get_user(self, user_id: str) -> User | None:
        item = self.get(f"USER#{user_id}", "PROFILE")
        return User.from_item(item) if item else None

    def find_by_email(self, email: str) -> User | None:
        claim = self.get(f"EMAIL#{email}", "EMAIL")
        return self.get_user(claim["userId"]) if claim else None

    def load_request_state(
        self, user_id: str, login_id: str, account_id: str, extra: tuple[tuple[str, str], ...] = ()
    ) -> tuple[User | None, Login | None, dict[str, Any] | None]:
        """User, login and account in one consistent BatchGetItem: the per-request auth read.
        `extra` keys (the route's own reads, conduit.identity.gate.prefetch) ride along: see `set_prefetched`."""
        own = [("USER#" + user_id, "PROFILE"), ("USER#" + user_id, f"LOGIN#{login_id}"), (f"ACCOUNT#{account_id}", "ACCOUNT")]
        found = self._batch_get(own + [key for key in extra if key not in own])
        set_prefetched({key: found.get(key) for key in extra})
        user = found.get((f"USER#{user_id}", "PROFILE"))
        login = found.get((f"USER#{user_id}", f"LOGIN#{login_id}"))
        return (
            User.from_item(user) if user else None,
            Login.from_item(login) if login else None,
            found.get((f"ACCOUNT#{account_id}", "ACCOUNT")),
        )

    def load_key_state(
        self, user_id: str, key_id: str, extra: tuple[tuple[str, str], ...] = ()
    ) -> tuple[User | None, dict[str, Any] | None, dict[str, Any] | None]:
        """The per-request auth read of an API-key call, the same one BatchGetItem: the maker, the
        key (live `APIKEY#` or revoked `REVOKEDKEY#` item, whichever exists) and the personal account;
        and the route's `extra` keys, as in `load_request_state`."""
        own = [
            (f"USER#{user_id}", "PROFILE"),
            (f"USER#{user_id}", f"APIKEY#{key_id}"),
            (f"USER#{user_id}", f"REVOKEDKEY#{key_id}"),
            (f"ACCOUNT#{user_id}", "ACCOUNT"),
        ]
        found = self._batch_get(own + [key for key in extra if key not in own])
        set_prefetched({key: found.get(key) for key in extra})
        user = found.get((f"USER#{user_id}", "PROFILE"))
        key = found.get((f"USER#{user_id}", f"APIKEY#{key_id}")) or found.get((f"USER#{user_id}", f"REVOKEDKEY#{key_id}"))
        return User.from_item(user) if user else None, key, found.get((f"ACCOUNT#{user_id}", "ACCOUNT"))

    def load_grant_state(
        self, user_id: str, grant_id: str, extra: tuple[tuple[str, str], ...] = ()
    ) -> tuple[User | None, dict[str, Any] | None, dict[str, Any] | None]:
        """The per-request auth read of a call with an OAuth access token of /mcp, one BatchGetItem as
        for keys: the user, the grant (revoked or gone: the token is dead) and the personal account."""
        own = [(f"USER#{user_id}", "PROFILE"), (f"USER#{user_id}", f"OAUTHGRANT#{grant_id}"), (f"ACCOUNT#{user_id}", "ACCOUNT")]
        found = self._batch_get(own + [key for key in extra if key not in own])
        set_prefetched({key: found.get(key) for key in extra})
        user = found.get((f"USER#{user_id}", "PROFILE"))
        return User.from_item(user) if user else None, found.get(own[1]), found.get(own[2])

    def _batch_get(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        response = self.client.batch_get_item(
            RequestItems={self.table_name: {"Keys": [to_item({"PK": pk, "SK": sk}) for pk, sk in keys], "ConsistentRead": True}}
        )
        found = {(item["PK"]["S"], item["SK"]["S"]): from_item(item) for item in response["Responses"][self.table_name]}
        # A few small items never exceed BatchGetItem's limits; retry the rare throttled key anyway.
        unprocessed = response.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
        for key in unprocessed:
            item = self.get(key["PK"]["S"], key["SK"]["S"])
            if item:
                found[(item["PK"], item["SK"])] = item
        return found

    def list_users(self, limit: int, cursor: str | None) -> Page:
        page = self.query_page("USERS", index="GSI1", limit=limit, cursor=cursor)
        return Page(items=[User.from_item(item) for item in page.items], next_cursor=page.next_cursor)

    # --- login sessions and refresh tokens ------------------------------------------
    def start_login(
        self, user: User, login_id: str, refresh_digest: str, created_at: str, expires_epoch: int
    ) -> None:
        login = {
            "PK": f"USER#{user.id}",
            "SK": f"LOGIN#{login_id}",
            "sid": login_id,
            "tokenVersion": user.token_version,
            "revoked": False,
            "createdAt": created_at,
            "expiresAt": expires_epoch,
        }
        write_transaction(
            self.client,
            [
                {"Put": {"TableName": self.table_name, "Item": to_item(login)}},
                {"Put": {"TableName": self.table_name, "Item": self._refresh_item(user.id, login_id, refresh_digest, expires_epoch)}},
            ],
        )

    def _refresh_item(self, user_id: str, login_id: str, digest: str, expires_epoch: int) -> dict[str, Any]:
        return to_item(
            {
                "PK": f"REFRESH#{digest}",
                "SK": "REFRESH",
                "userId": user_id,
                "sid": login_id,
                "spent": False,
                "expiresAt": expires_epoch,
            }
        )

    def get_refresh(self, digest: str) -> dict[str, Any] | None:
        return self.get(f"REFRESH#{digest}", "REFRESH")

    def rotate_refresh(
        self, user_id: str, login_id: str, old_digest: str, new_digest: str, expires_epoch: int
    ) -> bool:
        """Spend the old refresh token and store the new one, atomically. False: the old one was already spent."""
        try:
            write_transaction(
                self.client,
                [
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": _refresh_key(old_digest),
                            "UpdateExpression": "SET spent = :true",
                            "ConditionExpression": "spent = :false",
                            "ExpressionAttributeValues": {":true": {"BOOL": True}, ":false": {"BOOL": False}},
                        }
                    },
                    {"Put": {"TableName": self.table_name, "Item": self._refresh_item(user_id, login_id, new_digest, expires_epoch)}},
                ],
            )
        except ConditionsFailed:  # only the old token's `spent = false` can fail
            return False
        return True

    def revoke_login(self, user_id: str, login_id: str) -> None:
        self.client.update_item(
            TableName=self.table_name,
            Key=_login_key(user_id, login_id),
            UpdateExpression="SET revoked = :true",
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeValues={":true": {"BOOL": True}},
        )

    def get_login(self, user_id: str, login_id: str) -> Login | None:
        item = self.get(f"USER#{user_id}", f"LOGIN#{login_id}")
        return Login.from_item(item) if item else None

    # --- changes to the user ------------------------------------------------------
    def replace_password_hash(self, user_id: str, old: str, new: str) -> bool:
        """Store a rehashed password only if the stored hash is still `old`; False if it changed."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=_user_key(user_id),
                UpdateExpression="SET passwordHash = :new",
                ConditionExpression="passwordHash = :old",
                ExpressionAttributeValues=to_item({":new": new, ":old": old}),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def update_user(self, user_id: str, *, increment_token_version: bool = False, **values: Any) -> User:
        """Set attributes (and/or bump tokenVersion, which revokes every login) of an existing user."""
        request = update_request(
            self.table_name,
            _plain_user_key(user_id),
            set_values=values,
            add={"tokenVersion": 1} if increment_token_version else None,
            condition="attribute_exists(PK)",
        )
        try:
            response = self.client.update_item(**request, ReturnValues="ALL_NEW")
        except self.client.exceptions.ConditionalCheckFailedException:
            raise ConduitError("NOT_FOUND", "No user with this id") from None
        return User.from_item(from_item(response["Attributes"]))
