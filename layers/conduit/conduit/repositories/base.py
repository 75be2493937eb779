"""Repository base: the one DynamoDB client, item (de)serialization, pages.

Each repository subclass owns a few access patterns of TABLE.md and nothing
else; domain code never builds keys or expressions itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import time
from contextvars import ContextVar
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from conduit.platform import safe_json
from conduit.platform.aws import dynamodb_client
from conduit.platform.errors import validation_error
from conduit.platform.settings import get_settings

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

KEY_ATTRIBUTES = ("PK", "SK", "GSI1PK", "GSI1SK")
_PLAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

# Items the gate read for this request's route in its one BatchGetItem (conduit.identity.gate.prefetch), absent
# ones as None: `Repository.get` answers each from here once instead of a GetItem of its own (issue 22).
# A ContextVar, so threads serving requests in one process never see each other's.
_PREFETCHED: ContextVar[dict[tuple[str, str], dict[str, Any] | None]] = ContextVar("prefetched")


def set_prefetched(found: dict[tuple[str, str], dict[str, Any] | None]) -> None:
    """What this request's gate read for its route (an empty dict clears the last request's)."""
    _PREFETCHED.set(dict(found))


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items() if value is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def encode_cursor(last_item: dict[str, Any], key_attributes: tuple[str, ...]) -> str:
    """An opaque cursor: the key of the last item on the page."""
    plain = {name: last_item[name] for name in key_attributes}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


MAX_CURSOR_LENGTH = 4096  # four key attributes of at most 1 KiB each, base64


def decode_cursor(
    cursor: str,
    *,
    partition_attribute: str,
    partition_value: str,
    key_attributes: tuple[str, ...] = ("PK", "SK"),
    sort_attribute: str | None = None,
    sort_prefix: str | None = None,
) -> dict[str, Any]:
    """The ExclusiveStartKey of a cursor, refusing any cursor not made for this query: exactly the
    query's key attributes, all non-empty strings, in its partition and sort-key range (DynamoDB
    answers anything else with a ValidationException, which would be a 500)."""
    refused = validation_error("cursor", "is not a cursor returned by this list")
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise refused
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        plain = safe_json.loads(base64.urlsafe_b64decode(padded.encode("ascii")), max_depth=1)
    except (binascii.Error, ValueError, UnicodeError):
        raise refused from None
    valid = (
        isinstance(plain, dict)
        and set(plain) == set(key_attributes)
        and all(isinstance(value, str) and value for value in plain.values())
        and plain.get(partition_attribute) == partition_value
        and (sort_attribute is None or not sort_prefix or plain[sort_attribute].startswith(sort_prefix))
    )
    if not valid:
        raise refused
    return {name: {"S": value} for name, value in plain.items()}


def update_request(
    table_name: str,
    key: dict[str, str],
    *,
    set_values: dict[str, Any] | None = None,
    set_if_absent: dict[str, Any] | None = None,
    add: dict[str, int] | None = None,
    remove: tuple[str, ...] = (),
    condition: str | None = None,
    condition_names: dict[str, str] | None = None,
    condition_values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The one builder of an UpdateItem request (also a transaction's `Update`): SET, SET
    if_not_exists, ADD and REMOVE, every attribute behind a name placeholder (`#<name>`), so
    reserved words such as `count` are safe; `condition` may use those placeholders and names
    any others in `condition_names`, its values in `condition_values` (plain values, serialized here)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}

    def placeholder(prefix: str, index: int, name: str, value: Any = None) -> tuple[str, str]:
        # `#<name>` for a plain name, so a condition may say `#count` too; any other name numbered.
        attribute = f"#{name}" if _PLAIN_NAME.fullmatch(name) else f"#{prefix}{index}"
        names[attribute] = name
        if value is not None:
            values[f":{prefix}{index}"] = value
        return attribute, f":{prefix}{index}"

    assignments = [" = ".join(placeholder("s", i, n, v)) for i, (n, v) in enumerate((set_values or {}).items())]
    for index, (name, value) in enumerate((set_if_absent or {}).items()):
        attribute, value_name = placeholder("k", index, name, value)
        assignments.append(f"{attribute} = if_not_exists({attribute}, {value_name})")
    clauses = ["SET " + ", ".join(assignments)] if assignments else []
    if add:
        clauses.append("ADD " + ", ".join(" ".join(placeholder("a", i, n, v)) for i, (n, v) in enumerate(add.items())))
    if remove:
        clauses.append("REMOVE " + ", ".join(placeholder("r", i, n)[0] for i, n in enumerate(remove)))
    names.update(condition_names or {})
    values.update(condition_values or {})
    request: dict[str, Any] = {
        "TableName": table_name,
        "Key": to_item(key),
        "UpdateExpression": " ".join(clauses),
        "ExpressionAttributeNames": names,
    }
    if condition:
        request["ConditionExpression"] = condition
    if values:
        request["ExpressionAttributeValues"] = to_item(values)
    return request


class Repository:
    def __init__(self, client: Any | None = None, table_name: str | None = None) -> None:
        self.client = client or dynamodb_client()
        self.table_name = table_name or get_settings().table_name

    def take_prefetched(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any] | None] | None:
        """These items as this request's gate read them (None for absent ones), if it read them all."""
        prefetched = _PREFETCHED.get(None)
        if not prefetched or any(key not in prefetched for key in keys):
            return None
        return {key: prefetched.pop(key) for key in keys}

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        prefetched = _PREFETCHED.get(None)
        if prefetched and (pk, sk) in prefetched:  # read consistently by this request's gate, used once
            return prefetched.pop((pk, sk))
        response = self.client.get_item(
            TableName=self.table_name, Key=to_item({"PK": pk, "SK": sk}), ConsistentRead=True
        )
        item = response.get("Item")
        return from_item(item) if item else None

    def update_existing(
        self, key: dict[str, str], values: dict[str, Any], remove: tuple[str, ...], not_found: Exception
    ) -> dict[str, Any]:
        """Set (and remove) attributes of an item that exists, returning it as stored; `not_found` if it is gone."""
        item = self.update_where(key, values, remove)
        if item is None:
            raise not_found
        return item

    def update_where(
        self,
        key: dict[str, str],
        values: dict[str, Any],
        remove: tuple[str, ...] = (),
        *,
        condition: str = "attribute_exists(PK)",
        condition_names: dict[str, str] | None = None,
        condition_values: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Set (and remove) attributes if `condition` holds, returning the item as stored; None if it does not."""
        request = update_request(
            self.table_name,
            key,
            set_values=values,
            remove=remove,
            condition=condition,
            condition_names=condition_names,
            condition_values=condition_values,
        )
        try:
            response = self.client.update_item(**request, ReturnValues="ALL_NEW")
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return from_item(response["Attributes"])

    def query_all(self, pk: str, *, sk_prefix: str | None = None, index: str | None = None) -> list[dict[str, Any]]:
        """Every item of a partition (for small, bounded partitions: a session, a workspace)."""
        items, cursor = [], None
        while True:
            page = self.query_page(pk, sk_prefix=sk_prefix, index=index, limit=100, cursor=cursor)
            items.extend(page.items)
            if page.next_cursor is None:
                return items
            cursor = page.next_cursor

    def delete_keys(self, keys: list[dict[str, str]]) -> None:
        """Delete items by key, 25 per BatchWriteItem (its limit), retrying what DynamoDB leaves unprocessed."""
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": to_item(key)}} for key in keys[start : start + 25]]
            for _ in backoff(CONFLICT_ATTEMPTS, base=0.005):
                unprocessed = self.client.batch_write_item(RequestItems={self.table_name: requests}).get("UnprocessedItems", {})
                requests = unprocessed.get(self.table_name, [])
                if not requests:
                    break
            if requests:
                raise RuntimeError(f"{len(requests)} deletes stayed unprocessed")

    def query_page(
        self,
        pk: str,
        *,
        sk_prefix: str | None = None,
        index: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page:
        """One page of a partition (table or GSI1), optionally narrowed by a sort-key prefix."""
        pk_name, sk_name = ("GSI1PK", "GSI1SK") if index else ("PK", "SK")
        condition = f"{pk_name} = :pk"
        values: dict[str, Any] = {":pk": {"S": pk}}
        if sk_prefix:
            condition += f" AND begins_with({sk_name}, :sk)"
            values[":sk"] = {"S": sk_prefix}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            # One extra item tells whether another page exists, so the last
            # page has nextCursor null instead of leading to an empty page.
            "Limit": limit + 1,
            "ScanIndexForward": not newest_first,
        }
        if index:
            request["IndexName"] = index
        key_attributes = ("PK", "SK", "GSI1PK", "GSI1SK") if index else ("PK", "SK")
        if cursor:
            request["ExclusiveStartKey"] = decode_cursor(
                cursor,
                partition_attribute=pk_name,
                partition_value=pk,
                key_attributes=key_attributes,
                sort_attribute=sk_name,
                sort_prefix=sk_prefix,
            )
        items = [from_item(item) for item in self.client.query(**request).get("Items", [])]
        if len(items) <= limit:
            return Page(items=items)
        return Page(items=items[:limit], next_cursor=encode_cursor(items[limit - 1], key_attributes))


# --- transactions ------------------------------------------------------------

# A transaction cancelled only by TransactionConflict (another transaction was
# touching one of its items) wrote nothing, so running it again is safe.
CONFLICT_ATTEMPTS = 5


def backoff(attempts: int, *, base: float, cap: float = 1.0) -> Iterator[int]:
    """The one retry loop: attempt numbers 0 … attempts-1, sleeping before each retry a full-jitter
    backoff (uniform up to base·2^attempt, at most `cap`) so rivals spread out instead of colliding
    again. The caller breaks out on success and decides what running out means."""
    for attempt in range(attempts):
        if attempt:
            time.sleep(random.uniform(0, min(base * 2**attempt, cap)))
        yield attempt


class ConditionsFailed(Exception):
    """A transaction was cancelled because the conditions of these items (indexes) failed."""

    def __init__(self, indexes: frozenset[int]) -> None:
        super().__init__(f"transaction conditions failed at items {sorted(indexes)}")
        self.indexes = indexes


def write_transaction(client: Any, items: list[dict[str, Any]]) -> None:
    """Run one TransactWriteItems; a failed condition → ConditionsFailed naming the items.

    Callers tell their failures apart by index (the resource vs. its counter,
    the balance vs. the idempotency marker), which is why this returns the
    positions from CancellationReasons rather than a bare "it failed".
    """
    for attempt in backoff(CONFLICT_ATTEMPTS, base=0.005):
        try:
            client.transact_write_items(TransactItems=items)
            return
        except client.exceptions.TransactionCanceledException as error:
            codes = [reason.get("Code", "None") for reason in error.response.get("CancellationReasons", [])]
            failed = frozenset(index for index, code in enumerate(codes) if code == "ConditionalCheckFailed")
            if failed:
                raise ConditionsFailed(failed) from None
            if "TransactionConflict" not in codes or attempt == CONFLICT_ATTEMPTS - 1:
                raise
