"""The credit ledger's items (TABLE.md, partition `ACCOUNT#<accountId>`): the balances on the
account item, `LEDGER#…` entries, `IDEMPOTENCY#<key>` markers and `HOLD#<key>` holds.

conduit.billing.credits decides what a change is (the rules: monthly credits first, holds covered,
compare-and-set rounds); this module knows only where those items live and how they are read and
written: one consistent read of the balances with a key's marker and hold, and the transaction
items a change is made of.
"""

from __future__ import annotations

from typing import Any

from conduit.repositories.accounts import ACCOUNT_SK, LEDGER_PREFIX, account_key, account_pk
from conduit.repositories.base import Page, Repository, backoff, from_item, to_item, update_request, write_transaction

HOLD_PREFIX = "HOLD#"
MARKER_PREFIX = "IDEMPOTENCY#"
# DynamoDB cancels a transactional read that meets a write in flight on a hot account: read again,
# this many times at most (each cancellation means some rival committed).
READ_ATTEMPTS = 50


class CreditsRepository(Repository):
    def snapshot(
        self, account_id: str, marker_key: str | None, hold_key: str | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]:
        """(account item, marker of `marker_key`, hold of `hold_key`), in one consistent read
        (TransactGetItems); None for each that is absent or not asked for."""
        keys = [account_key(account_id)]
        if marker_key is not None:
            keys.append(to_item({"PK": account_pk(account_id), "SK": f"{MARKER_PREFIX}{marker_key}"}))
        if hold_key is not None:
            keys.append(to_item({"PK": account_pk(account_id), "SK": f"{HOLD_PREFIX}{hold_key}"}))
        request = [{"Get": {"TableName": self.table_name, "Key": item_key}} for item_key in keys]
        for attempt in backoff(READ_ATTEMPTS, base=0.001, cap=0.1):
            try:
                response = self.client.transact_get_items(TransactItems=request)
                break
            except self.client.exceptions.TransactionCanceledException:
                if attempt == READ_ATTEMPTS - 1:
                    raise
        found = [from_item(answer.get("Item", {})) or None for answer in response["Responses"]]
        marker = found[1] if marker_key is not None else None
        hold = found[-1] if hold_key is not None else None
        return found[0], marker, hold

    def write(self, items: list[dict[str, Any]]) -> None:
        """One change, all or nothing (ConditionsFailed when a rival changed the balances first)."""
        write_transaction(self.client, items)

    # --- the items of a change (TransactWriteItems entries) ---

    def set_balances(self, account_id: str, *, seen_changed_at: str, at: str, **balances: int) -> dict[str, Any]:
        """Set the account's balances (credits, monthlyCredits, purchasedCredits, heldCredits) and
        `balanceChangedAt`, on the condition that nothing changed them since `seen_changed_at`."""
        update = update_request(
            self.table_name,
            {"PK": account_pk(account_id), "SK": ACCOUNT_SK},
            set_values={**balances, "balanceChangedAt": at},
            condition="#balanceChangedAt = :seenAt",
            condition_values={":seenAt": seen_changed_at},
        )
        return {"Update": update}

    def put_new(self, values: dict[str, Any]) -> dict[str, Any]:
        """Put an item that must not exist yet (a ledger entry, a marker, a hold)."""
        return {"Put": {"TableName": self.table_name, "Item": to_item(values), "ConditionExpression": "attribute_not_exists(PK)"}}

    def marker_absent(self, account_id: str, key: str) -> dict[str, Any]:
        """A condition: no change was made under `key` yet."""
        item_key = to_item({"PK": account_pk(account_id), "SK": f"{MARKER_PREFIX}{key}"})
        return {"ConditionCheck": {"TableName": self.table_name, "Key": item_key, "ConditionExpression": "attribute_not_exists(PK)"}}

    def delete_hold(self, account_id: str, key: str) -> dict[str, Any]:
        """Delete the hold under `key`, which must still be there."""
        item_key = to_item({"PK": account_pk(account_id), "SK": f"{HOLD_PREFIX}{key}"})
        return {"Delete": {"TableName": self.table_name, "Key": item_key, "ConditionExpression": "attribute_exists(PK)"}}

    @staticmethod
    def marker_item(account_id: str, key: str, **values: Any) -> dict[str, Any]:
        return {"PK": account_pk(account_id), "SK": f"{MARKER_PREFIX}{key}", "key": key, **values}

    @staticmethod
    def hold_item(account_id: str, key: str, **values: Any) -> dict[str, Any]:
        return {"PK": account_pk(account_id), "SK": f"{HOLD_PREFIX}{key}", "key": key, **values}

    # --- lists ---

    def ledger_page(self, account_id: str, limit: int, cursor: str | None) -> Page:
        """Ledger entries, newest first."""
        return self.query_page(account_pk(account_id), sk_prefix=LEDGER_PREFIX, limit=limit, cursor=cursor, newest_first=True)

    def open_holds(self, account_id: str) -> list[dict[str, Any]]:
        return self.query_page(account_pk(account_id), sk_prefix=HOLD_PREFIX, limit=1000).items

