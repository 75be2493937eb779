"""Counted limits (agents, sites, workspace members, API keys): the counter items and the
transactions that change them with the resource they count (TABLE.md: `COUNT#<name>`).

One mechanism for every count: a counter item `ACCOUNT#<accountId>` / `COUNT#<name>` with
`count`, changed in the SAME transaction as the resource it counts. The counter's condition
(`count < max`) is what makes a limit hold under concurrent creates: a read-then-write check
would let parallel requests all see room and all get in.
"""

from __future__ import annotations

from typing import Any

from conduit.platform.errors import ConduitError
from conduit.repositories.accounts import account_pk
from conduit.repositories.base import ConditionsFailed, to_item, update_request, write_transaction
from conduit.platform.settings import get_settings

# Counter name → the code for "over the limit" (API.md §4); others → FEATURE_LIMIT_REACHED.
LIMIT_CODES = {
    "agents": "AGENT_LIMIT_REACHED",
    "sites": "VAULT_LIMIT_REACHED",
    "workspaceMembers": "FEATURE_LIMIT_REACHED",
}


def limit_code(name: str) -> str:
    return LIMIT_CODES.get(name, "FEATURE_LIMIT_REACHED")


def count_up_item(account_id: str, name: str, maximum: int | None, *, table: str | None = None) -> dict[str, Any]:
    """A TransactWriteItems Update adding 1 to the counter, refused at `maximum` (None: unlimited)."""
    if maximum is None:
        return _counter_update(account_id, name, +1, table)
    # A missing counter is 0. With maximum 0 nothing may be created, and a
    # comparison with a missing attribute is false, so the plain `<` refuses it.
    condition = "#count < :max" if maximum <= 0 else "attribute_not_exists(#count) OR #count < :max"
    return _counter_update(account_id, name, +1, table, condition, {":max": maximum})


def count_down_item(account_id: str, name: str, *, table: str | None = None) -> dict[str, Any]:
    """A TransactWriteItems Update taking 1 from the counter, never below 0."""
    return _counter_update(account_id, name, -1, table, "#count > :zero", {":zero": 0})


def create_counted(
    client: Any,
    table: str,
    account_id: str,
    name: str,
    maximum: int | None,
    resource_items: list[dict[str, Any]],
    code: str | None = None,
) -> None:
    """Write the resource items and count them up, all or nothing.

    Over the limit → ConduitError(code, default by `name`). A failed condition
    of a resource item (say, it already exists) → ConditionsFailed with the
    indexes of `resource_items` that failed, for the caller to map (TOKEN_EXISTS, …).
    """
    counter = count_up_item(account_id, name, maximum, table=table)
    _write_counted(client, resource_items, counter, ConduitError(code or limit_code(name)))


def delete_counted(client: Any, table: str, account_id: str, name: str, resource_items: list[dict[str, Any]]) -> None:
    """Delete the resource items and count them down, all or nothing.

    A failed resource condition (say, it is already gone) → ConditionsFailed
    with its indexes, for the caller to map to its NOT_FOUND code. A counter
    already at 0 means the counter drifted from the resources: a bug, so it
    is an internal error rather than something to paper over.
    """
    counter = count_down_item(account_id, name, table=table)
    drift = RuntimeError(f"counter {name} of account {account_id} is already 0")
    _write_counted(client, resource_items, counter, drift)


def _write_counted(
    client: Any, resource_items: list[dict[str, Any]], counter: dict[str, Any], counter_failure: Exception
) -> None:
    counter_index = len(resource_items)
    try:
        write_transaction(client, [*resource_items, counter])
    except ConditionsFailed as failed:
        # The resource's own failure wins: "already exists" says more than "over the limit".
        resource_failures = failed.indexes - {counter_index}
        if resource_failures:
            raise ConditionsFailed(resource_failures) from None
        raise counter_failure from None


def _counter_key(account_id: str, name: str) -> dict[str, str]:
    return {"PK": account_pk(account_id), "SK": f"COUNT#{name}"}


def _counter_update(
    account_id: str, name: str, step: int, table: str | None, condition: str | None = None, values: dict[str, int] | None = None
) -> dict[str, Any]:
    update = update_request(
        table or get_settings().table_name,
        _counter_key(account_id, name),
        add={"count": step},  # `#count` in the conditions: COUNT is a DynamoDB reserved word
        condition=condition,
        condition_values=values,
    )
    return {"Update": update}


def current_count(client: Any, table: str, account_id: str, name: str) -> int:
    """The counter's value (0 if never counted), read consistently."""
    response = client.get_item(TableName=table, Key=to_item(_counter_key(account_id, name)), ConsistentRead=True)
    return int(response.get("Item", {}).get("count", {}).get("N", "0"))
