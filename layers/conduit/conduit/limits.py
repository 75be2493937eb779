"""Counted limits (agents, sites, workspace members, …) and tier features.

One mechanism for every count: a counter item `ACCOUNT#<accountId>` /
`COUNT#<name>` with `count`, changed in the SAME transaction as the resource
it counts. The counter's condition (`count < max`) is what makes a limit hold
under concurrent creates: a read-then-write check would let parallel
requests all see room and all get in.
"""

from __future__ import annotations

from typing import Any

from conduit.errors import ConduitError
from conduit.repositories.accounts import account_pk
from conduit.repositories.base import ConditionsFailed, write_transaction
from conduit.repositories.base import to_item
from conduit.settings import get_settings
from conduit.tiers import Tier, get_tiers

# Counter name → the code for "over the limit" (API.md §4); others → FEATURE_LIMIT_REACHED.
LIMIT_CODES = {
    "agents": "AGENT_LIMIT_REACHED",
    "sites": "VAULT_LIMIT_REACHED",
    "workspaceMembers": "FEATURE_LIMIT_REACHED",
}
# Feature → the code for "your tier lacks it"; a workspace needs the Team plan (API.md §10).
FEATURE_CODES = {"workspaces": "WORKSPACE_REQUIRED"}


def limit_code(name: str) -> str:
    return LIMIT_CODES.get(name, "FEATURE_LIMIT_REACHED")


def require_feature(tier: Tier, feature: str) -> None:
    """TIER_REQUIRED (WORKSPACE_REQUIRED for workspaces) unless the tier includes `feature`."""
    if not tier.allows(feature):
        code = FEATURE_CODES.get(feature, "TIER_REQUIRED")
        if code != "TIER_REQUIRED":
            raise ConduitError(code)
        tiers = get_tiers().tiers
        having = [name for name, candidate in tiers.items() if candidate.allows(feature)]
        raise ConduitError(
            code,
            f"The {feature} feature is not in the {tier_name(tier, tiers)} tier; it is in: {', '.join(having) or 'no tier'}",
        )


def tier_name(tier: Tier, tiers: dict[str, Tier]) -> str:
    return next((name for name, candidate in tiers.items() if candidate == tier), "current")


def count_up_item(account_id: str, name: str, maximum: int | None, *, table: str | None = None) -> dict[str, Any]:
    """A TransactWriteItems Update adding 1 to the counter, refused at `maximum` (None: unlimited)."""
    update = _counter_update(account_id, name, +1, table)
    if maximum is not None:
        # A missing counter is 0. With maximum 0 nothing may be created, and a
        # comparison with a missing attribute is false, so the plain `<` refuses it.
        condition = "#count < :max" if maximum <= 0 else "attribute_not_exists(#count) OR #count < :max"
        update["ConditionExpression"] = condition
        update["ExpressionAttributeValues"][":max"] = {"N": str(maximum)}
    return {"Update": update}


def count_down_item(account_id: str, name: str, *, table: str | None = None) -> dict[str, Any]:
    """A TransactWriteItems Update taking 1 from the counter, never below 0."""
    update = _counter_update(account_id, name, -1, table)
    update["ConditionExpression"] = "#count > :zero"
    update["ExpressionAttributeValues"][":zero"] = {"N": "0"}
    return {"Update": update}


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


def _counter_update(account_id: str, name: str, step: int, table: str | None) -> dict[str, Any]:
    return {
        "TableName": table or get_settings().table_name,
        "Key": to_item({"PK": account_pk(account_id), "SK": f"COUNT#{name}"}),
        "UpdateExpression": "ADD #count :step",
        "ExpressionAttributeNames": {"#count": "count"},  # COUNT is a DynamoDB reserved word
        "ExpressionAttributeValues": {":step": {"N": str(step)}},
    }


def current_count(client: Any, table: str, account_id: str, name: str) -> int:
    """The counter's value (0 if never counted), read consistently."""
    response = client.get_item(
        TableName=table,
        Key=to_item({"PK": account_pk(account_id), "SK": f"COUNT#{name}"}),
        ConsistentRead=True,
    )
    return int(response.get("Item", {}).get("count", {}).get("N", "0"))
