"""The credit ledger: an exact integer balance per account, never negative.

Items (partition `ACCOUNT#<accountId>`, see TABLE.md):
- the account item's `credits` (the balance) and `balanceChangedAt`;
- `LEDGER#<createdAt>#<entryId>`: one per change, `{id, delta, balance, reason, createdAt, key}`;
- `IDEMPOTENCY#<key>`: the outcome of the change made under `key`.

How it stays exact:
- Each change is ONE transaction: the balance update, its ledger entry and
  its idempotency marker (`attribute_not_exists`). Either all land or none.
- The ledger entry records the balance it left, which a transaction cannot
  read back. So a change reads the balance first and writes the new one on
  the condition that the balance and `balanceChangedAt` are still what it
  read (compare-and-set); if another change got in between, it reads again.
  This also orders the ledger: an entry's timestamp is later than the one
  before it, because it is taken after that one committed.
- A retry with a used key finds the marker and returns the original outcome,
  writing nothing. Keys are per account.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from conduit import auto_top_up
from conduit.errors import ConduitError, validation_error
from conduit.ids import iso, new_id, parse_iso
from conduit.repositories.accounts import LEDGER_PREFIX, account_key, account_pk, ledger_entry_item
from conduit.repositories.base import ConditionsFailed, Page, Repository, from_item, to_item, write_transaction
from conduit.repositories.billing import top_up_threshold

# Compare-and-set rounds before giving up. Each round some rival committed,
# so this bounds waiting on a hot account rather than correctness.
MAX_ATTEMPTS = 25
MAX_KEY_LENGTH = 255  # keys are part of a sort key (1 KiB at most)


# --- the operations ------------------------------------------------------------


def spend(account_id: str, amount: int, reason: str, key: str) -> int:
    """Charge `amount`; the new balance. A balance that cannot cover it → NO_CREDITS.
    A spend that leaves the balance under the auto top-up threshold starts a top-up."""
    _require_positive("amount", amount)
    return int(_change(account_id, -amount, reason, key, usage=True)["balance"])


def grant(account_id: str, amount: int, reason: str, key: str) -> int:
    """Add `amount` (purchase, monthly credits, …); the new balance."""
    _require_positive("amount", amount)
    return int(_change(account_id, amount, reason, key)["balance"])


def adjust(account_id: str, delta: int, reason: str, key: str) -> int:
    """An admin's correction either way; the new balance. Below zero → NO_CREDITS."""
    if not _is_int(delta) or delta == 0:
        raise validation_error("delta", "must be a non-zero integer")
    return int(_change(account_id, delta, reason, key)["balance"])


def ledger_page(account_id: str, limit: int = 20, cursor: str | None = None) -> Page:
    """The ledger newest first, as GET /billing/ledger lists it."""
    page = Repository().query_page(
        account_pk(account_id), sk_prefix=LEDGER_PREFIX, limit=limit, cursor=cursor, newest_first=True
    )
    entries = [
        {
            "id": item["id"],
            "delta": int(item["delta"]),
            "balance": int(item["balance"]),
            "reason": item["reason"],
            "createdAt": item["createdAt"],
        }
        for item in page.items
    ]
    return Page(items=entries, next_cursor=page.next_cursor)


# --- one change of the balance -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Balance:
    """The balance as read, which the write is conditioned on."""

    credits: int
    changed_at: str
    top_up_below: int | None = None  # auto top-up threshold, when auto top-up is on


def _change(account_id: str, delta: int, reason: str, key: str, *, usage: bool = False) -> dict[str, Any]:
    """Apply `delta` under `key` once; the marker (outcome) of the change. `usage` (a spend)
    starts an auto top-up when it leaves the balance under the account's threshold."""
    _require_text("reason", reason, 500)
    _require_text("key", key, MAX_KEY_LENGTH)
    table = Repository()
    marker_sk = f"IDEMPOTENCY#{key}"
    for _ in _attempts(account_id):
        balance, marker = _read(table, account_id, marker_sk)
        if marker is not None:
            return marker  # a retry: the original outcome, nothing written
        new_balance = balance.credits + delta
        if new_balance < 0:
            raise ConduitError("NO_CREDITS")
        created_at = _next_timestamp(balance)
        entry = ledger_entry_item(
            account_id, entry_id=new_id("led"), delta=delta, balance=new_balance, reason=reason, key=key,
            created_at=created_at,
        )
        marker = {
            "PK": account_pk(account_id),
            "SK": marker_sk,
            "key": key,
            "entryId": entry["id"],
            "balance": new_balance,
            "createdAt": created_at,
        }
        items = [
            _set_balance(table, account_id, balance, new_balance, created_at),
            _put_new(table, entry),
            _put_new(table, marker),
        ]
        try:
            write_transaction(table.client, items)
        except ConditionsFailed:
            # The balance changed since we read it, or a concurrent call with the
            # same key committed first; the next round's read sorts out which.
            continue
        if usage and balance.top_up_below is not None and new_balance < balance.top_up_below:
            auto_top_up.start(account_id)  # after the commit: the spend stands whatever happens there
        return marker
    raise AssertionError("unreachable")  # _attempts raises when exhausted


def _read(table: Repository, account_id: str, sk: str) -> tuple[_Balance, dict[str, Any] | None]:
    """The balance and one other item of the account, as one consistent snapshot."""
    response = table.client.transact_get_items(
        TransactItems=[
            {"Get": {"TableName": table.table_name, "Key": account_key(account_id)}},
            {"Get": {"TableName": table.table_name, "Key": to_item({"PK": account_pk(account_id), "SK": sk})}},
        ]
    )
    account, other = (from_item(found.get("Item", {})) or None for found in response["Responses"])
    if account is None:
        raise ConduitError("NOT_FOUND", "No account found with the provided ID")
    balance = _Balance(
        credits=int(account["credits"]), changed_at=account["balanceChangedAt"], top_up_below=top_up_threshold(account)
    )
    return balance, other


def _set_balance(table: Repository, account_id: str, seen: _Balance, new_credits: int, at: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table.table_name,
            "Key": account_key(account_id),
            "UpdateExpression": "SET #credits = :credits, #changedAt = :at",
            "ConditionExpression": "#credits = :seenCredits AND #changedAt = :seenAt",
            "ExpressionAttributeNames": {"#credits": "credits", "#changedAt": "balanceChangedAt"},
            "ExpressionAttributeValues": to_item(
                {":credits": new_credits, ":at": at, ":seenCredits": seen.credits, ":seenAt": seen.changed_at}
            ),
        }
    }


def _put_new(table: Repository, values: dict[str, Any]) -> dict[str, Any]:
    item = to_item(values)
    return {"Put": {"TableName": table.table_name, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}


def _next_timestamp(seen: _Balance) -> str:
    """Now, but strictly after the previous change, so the ledger sorts in commit order."""
    now = datetime.now(UTC)
    after_previous = parse_iso(seen.changed_at) + timedelta(microseconds=1)
    return iso(max(now, after_previous))


def _attempts(account_id: str) -> Iterator[int]:
    """Rounds of compare-and-set, with jittered backoff so rivals spread out."""
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.1)))
        yield attempt
    raise RuntimeError(f"the balance of account {account_id} kept changing; gave up after {MAX_ATTEMPTS} attempts")


# --- input checks (before anything is written) ------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to us


def _require_positive(field: str, value: object) -> None:
    if not _is_int(value) or value <= 0:  # type: ignore[operator]
        raise validation_error(field, "must be a positive integer")


def _require_text(field: str, value: object, max_length: int) -> None:
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise validation_error(field, f"must be a non-empty string of at most {max_length} characters")
