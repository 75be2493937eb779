"""Workspaces and their members (TABLE.md rows: account (kind workspace), workspace member).

A workspace is an account (`ACCOUNT#<wsId>`, kind `workspace`); its members live in
its partition and are counted against the tier's `maxWorkspaceMembers` in the
same transaction that adds or removes them. GSI1 finds a user's workspaces.
"""

from __future__ import annotations

from typing import Any, NoReturn

from conduit.platform.errors import ConduitError
from conduit.repositories.counters import create_counted, delete_counted
from conduit.repositories.accounts import Account, account_pk
from conduit.repositories.base import ConditionsFailed, Repository, from_item, to_item

MEMBER_PREFIX = "MEMBER#"
MEMBERS_COUNTER = "workspaceMembers"


def membership_keys(workspace_id: str, user_id: str) -> list[tuple[str, str]]:
    return [(account_pk(workspace_id), "ACCOUNT"), (account_pk(workspace_id), f"{MEMBER_PREFIX}{user_id}")]


def prefetch_membership(path_parameters: dict[str, str], account_id: str) -> list[tuple[str, str]]:
    """The `/workspaces/{workspaceId}…` routes' workspace and the caller's membership, read by the
    gate (conduit.identity.gate.prefetch); `account_id` is the caller's own, whose id is the user's."""
    return membership_keys(path_parameters["workspaceId"], account_id)


def _member_key(workspace_id: str, user_id: str) -> dict[str, Any]:
    return to_item({"PK": account_pk(workspace_id), "SK": f"{MEMBER_PREFIX}{user_id}"})


def member_item(workspace_id: str, user_id: str, email: str, role: str, joined_at: str) -> dict[str, Any]:
    return {
        "PK": account_pk(workspace_id),
        "SK": f"{MEMBER_PREFIX}{user_id}",
        "GSI1PK": f"USER#{user_id}",
        "GSI1SK": f"WORKSPACE#{workspace_id}",
        "workspaceId": workspace_id,
        "userId": user_id,
        "email": email,
        "role": role,
        "joinedAt": joined_at,
    }


class WorkspacesRepository(Repository):
    def create(self, account_items: list[dict[str, Any]], owner: dict[str, Any], max_members: int | None) -> None:
        """The workspace account and its owner, counted as its first member, in one transaction."""
        put_owner = {"Put": {"TableName": self.table_name, "Item": to_item(owner), "ConditionExpression": "attribute_not_exists(PK)"}}
        create_counted(self.client, self.table_name, owner["workspaceId"], MEMBERS_COUNTER, max_members, [*account_items, put_owner])

    def membership(self, workspace_id: str, user_id: str) -> tuple[Account | None, str | None]:
        """The workspace account and the user's role in it, in one consistent BatchGetItem (the
        gate's, for the `/workspaces/{workspaceId}…` routes: `prefetch_membership`)."""
        taken = self.take_prefetched(membership_keys(workspace_id, user_id))
        if taken is not None:
            items = [item for item in taken.values() if item]
        else:
            keys = [to_item({"PK": account_pk(workspace_id), "SK": "ACCOUNT"}), _member_key(workspace_id, user_id)]
            response = self.client.batch_get_item(RequestItems={self.table_name: {"Keys": keys, "ConsistentRead": True}})
            items = [from_item(item) for item in response["Responses"][self.table_name]]
            for key in response.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", []):
                item = self.get(key["PK"]["S"], key["SK"]["S"])
                if item:
                    items.append(item)
        account = next((Account.from_item(item) for item in items if item["SK"] == "ACCOUNT"), None)
        role = next((item["role"] for item in items if item["SK"].startswith(MEMBER_PREFIX)), None)
        return account, role

    def add_member(self, member: dict[str, Any], max_members: int | None) -> bool:
        """Add a member, counted against the limit. False: already a member (nothing changed)."""
        put = {"Put": {"TableName": self.table_name, "Item": to_item(member), "ConditionExpression": "attribute_not_exists(PK)"}}
        try:
            create_counted(self.client, self.table_name, member["workspaceId"], MEMBERS_COUNTER, max_members, [put])
        except ConditionsFailed:
            return False
        return True

    def get_member(self, workspace_id: str, user_id: str) -> dict[str, Any]:
        item = self.get(account_pk(workspace_id), f"{MEMBER_PREFIX}{user_id}")
        if item is None:
            raise ConduitError("MEMBER_NOT_FOUND")
        return item

    def set_role(self, workspace_id: str, user_id: str, role: str) -> dict[str, Any]:
        """Change a member's role; never the owner's (checked in the write itself)."""
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key=_member_key(workspace_id, user_id),
                UpdateExpression="SET #role = :role",
                ConditionExpression="attribute_exists(PK) AND #role <> :owner",
                ExpressionAttributeNames={"#role": "role"},
                ExpressionAttributeValues=to_item({":role": role, ":owner": "owner"}),
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            self._raise_member_problem(workspace_id, user_id)
        return from_item(response["Attributes"])

    def remove_member(self, workspace_id: str, user_id: str) -> None:
        delete = {
            "Delete": {
                "TableName": self.table_name,
                "Key": _member_key(workspace_id, user_id),
                "ConditionExpression": "attribute_exists(PK) AND #role <> :owner",
                "ExpressionAttributeNames": {"#role": "role"},
                "ExpressionAttributeValues": to_item({":owner": "owner"}),
            }
        }
        try:
            delete_counted(self.client, self.table_name, workspace_id, MEMBERS_COUNTER, [delete])
        except ConditionsFailed:
            self._raise_member_problem(workspace_id, user_id)

    def _raise_member_problem(self, workspace_id: str, user_id: str) -> NoReturn:
        """Why a conditional change of a member failed (the member was missing or the owner), read
        after the fact. The owner never changes, so an owner now was the owner then; anyone else
        was missing at the write, even if re-added since (a race of add and remove)."""
        if self.get_member(workspace_id, user_id)["role"] == "owner":  # MEMBER_NOT_FOUND if still missing
            raise ConduitError("ROLE_CHANGE_FORBIDDEN", "The workspace owner's role cannot be changed or removed")
        raise ConduitError("MEMBER_NOT_FOUND")

    def members(self, workspace_id: str) -> list[dict[str, Any]]:
        return self.query_all(account_pk(workspace_id), sk_prefix=MEMBER_PREFIX)

    def memberships(self, user_id: str) -> list[dict[str, Any]]:
        return self.query_all(f"USER#{user_id}", sk_prefix="WORKSPACE#", index="GSI1")

    def delete(self, workspace_id: str) -> None:
        """The account item first (the workspace is gone at once), then everything in its partition."""
        self.client.delete_item(TableName=self.table_name, Key=to_item({"PK": account_pk(workspace_id), "SK": "ACCOUNT"}))
        remaining = self.query_all(account_pk(workspace_id))
        self.delete_keys([{"PK": item["PK"], "SK": item["SK"]} for item in remaining])
