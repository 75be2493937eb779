"""Chat sessions, their messages and aborted exchanges (TABLE.md rows: session, message, aborted exchange).

Messages and abort records share their session's partition and its `expiresAt`,
so TTL purges a session whole; until it does, an expired session still answers 410.
"""

from __future__ import annotations

from typing import Any

from conduit.platform.errors import ConduitError
from conduit.repositories.base import ConditionsFailed, Page, Repository, from_item, to_item, write_transaction

MESSAGE_PREFIX = "MSG#"
ABORT_PREFIX = "ABORT#"


def session_pk(token: str) -> str:
    return f"SESSION#{token}"


def prefetch_session(path_parameters: dict[str, str], account_id: str) -> list[tuple[str, str]]:
    """The `/sessions/{sessionToken}` routes' session, read by the gate (conduit.identity.gate.prefetch)."""
    return [(session_pk(path_parameters["sessionToken"]), "SESSION")]


class SessionsRepository(Repository):
    def create(self, session: dict[str, Any]) -> None:
        item = {
            "PK": session_pk(session["sessionToken"]),
            "SK": "SESSION",
            "GSI1PK": f"SESSIONS#{session['accountId']}",
            "GSI1SK": f"{session['createdAt']}#{session['sessionToken']}",
            **session,
        }
        self.client.put_item(TableName=self.table_name, Item=to_item(item), ConditionExpression="attribute_not_exists(PK)")

    def find(self, token: str) -> dict[str, Any] | None:
        return self.get(session_pk(token), "SESSION")

    def find_with_recent(self, token: str, count: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The session and its last `count` messages (oldest first) in one consistent Query: newest
        first, `SESSION` sorts after every `MSG#…` key, and `ABORT#…` keys (before `MSG#`) stay out."""
        response = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :last",
            ExpressionAttributeValues={":pk": {"S": session_pk(token)}, ":first": {"S": MESSAGE_PREFIX}, ":last": {"S": "SESSION"}},
            ScanIndexForward=False,
            Limit=count + 1,
            ConsistentRead=True,
        )
        items = [from_item(item) for item in response.get("Items", [])]
        if not items or items[0]["SK"] != "SESSION":
            return None, []
        return items[0], list(reversed(items[1:]))

    def list_for_account(self, account_id: str, limit: int, cursor: str | None) -> Page:
        return self.query_page(f"SESSIONS#{account_id}", index="GSI1", limit=limit, cursor=cursor, newest_first=True)

    def all_messages(self, token: str) -> list[dict[str, Any]]:
        return self.query_all(session_pk(token), sk_prefix=MESSAGE_PREFIX)

    def append_exchange(self, session: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        """The user message and the answer of one exchange, together or not at all, and only
        while the session still exists (a concurrent delete wins)."""
        token = session["sessionToken"]
        items: list[dict[str, Any]] = [
            {
                "ConditionCheck": {
                    "TableName": self.table_name,
                    "Key": to_item({"PK": session_pk(token), "SK": "SESSION"}),
                    "ConditionExpression": "attribute_exists(PK)",
                }
            }
        ]
        for message in messages:
            item = {"PK": session_pk(token), "SK": f"{MESSAGE_PREFIX}{message['createdAt']}#{message['seq']}", "expiresAt": session["expiresAt"], **message}
            items.append({"Put": {"TableName": self.table_name, "Item": to_item(item)}})
        try:
            write_transaction(self.client, items)
        except ConditionsFailed:  # only the session check has a condition: it was deleted meanwhile
            raise ConduitError("SESSION_NOT_FOUND") from None

    def record_abort(self, session: dict[str, Any], record: dict[str, Any]) -> None:
        """An exchange whose client left mid-stream (STREAM_ABORTED); never read as a message."""
        item = {
            "PK": session_pk(session["sessionToken"]),
            "SK": f"{ABORT_PREFIX}{record['createdAt']}#{record['exchangeId']}",
            "expiresAt": session["expiresAt"],
            **record,
        }
        self.client.put_item(TableName=self.table_name, Item=to_item(item))

    def aborted_exchanges(self, token: str) -> list[dict[str, Any]]:
        return self.query_all(session_pk(token), sk_prefix=ABORT_PREFIX)

    def delete(self, token: str) -> None:
        """The session first (so it answers 404 at once), then its messages and abort records."""
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key=to_item({"PK": session_pk(token), "SK": "SESSION"}),
                ConditionExpression="attribute_exists(PK)",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise ConduitError("SESSION_NOT_FOUND") from None
        rest = [*self.all_messages(token), *self.aborted_exchanges(token)]
        self.delete_keys([{"PK": item["PK"], "SK": item["SK"]} for item in rest])
