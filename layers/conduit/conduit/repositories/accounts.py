"""Accounts: the `ACCOUNT#<accountId>` partition's account item, and its keys.

Every user has a personal account and every workspace is an account (API.md
§4); tier, credit balance and subscription live on the account item. The
ledger, holds, idempotency markers and limit counters share the partition
(see TABLE.md), so the key builders live here and `credits`/`limits` use them.

Everything that must change two items together (balance + ledger, resource +
counter) goes through `repositories.base.write_transaction`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from conduit.platform.errors import ConduitError, validation_error
from conduit.platform.ids import iso, new_id, parse_iso
from conduit.repositories.base import Repository, from_item, to_item, update_request
from conduit.platform.tiers import TIER_NAMES, get_tiers

AccountKind = Literal["personal", "workspace"]
SubscriptionStatus = Literal["none", "active", "past_due", "canceled"]
SUBSCRIPTION_STATUSES: tuple[str, ...] = get_args(SubscriptionStatus)

ACCOUNT_SK = "ACCOUNT"
LEDGER_PREFIX = "LEDGER#"


def account_pk(account_id: str) -> str:
    return f"ACCOUNT#{account_id}"


def account_key(account_id: str) -> dict[str, Any]:
    return to_item({"PK": account_pk(account_id), "SK": ACCOUNT_SK})


def ledger_entry_item(
    account_id: str, *, entry_id: str, delta: int, balance: int, reason: str, key: str, created_at: str
) -> dict[str, Any]:
    """A ledger entry (plain values): one change of the balance and the balance it left."""
    return {
        "PK": account_pk(account_id),
        "SK": f"{LEDGER_PREFIX}{created_at}#{entry_id}",
        "id": entry_id,
        "delta": delta,
        "balance": balance,
        "reason": reason,
        "createdAt": created_at,
        "key": key,
    }


# --- the account item --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    kind: AccountKind
    owner_id: str
    tier: str
    credits: int
    subscription_status: SubscriptionStatus
    created_at: str
    name: str | None = None
    # The two balances whose sum is `credits` (API.md §15); see credits.py.
    monthly_credits: int = 0
    purchased_credits: int = 0
    # The item as read (strongly consistent, by the gate or the workspace check): GET /billing and a
    # chat's first credits write start from it instead of reading it again (issue 22). Never compared.
    item: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_item(cls, item: dict[str, Any], *, now: datetime | None = None) -> Account:
        """From a plain (already deserialized) account item. `tier` is the tier in force: a
        subscription past due for longer than `pastDueGraceDays` has dropped to free (API.md §4),
        computed here on every read so no sweep has to run on time; the stored tier comes back
        as soon as the subscription is active again."""
        return cls(
            account_id=item["accountId"],
            kind=item["kind"],
            owner_id=item["ownerId"],
            tier=get_tiers().tier_in_force(
                item["tier"],
                item.get("subscriptionStatus"),
                parse_iso(item["pastDueSince"]) if item.get("pastDueSince") else None,
                now or datetime.now(UTC),
            ),
            credits=int(item["credits"]),
            subscription_status=item["subscriptionStatus"],
            created_at=item["createdAt"],
            name=item.get("name"),
            monthly_credits=int(item.get("monthlyCredits", 0)),
            # An item from before the two balances has only `credits`: they read as purchased.
            purchased_credits=int(item["purchasedCredits"]) if "purchasedCredits" in item else int(item["credits"]) - int(item.get("monthlyCredits", 0)),
            item=item,
        )


class AccountsRepository(Repository):
    def new_account_items(
        self,
        account_id: str,
        *,
        kind: AccountKind,
        owner_id: str,
        tier: str = "free",
        signup_credits: int,
        now: datetime,
        name: str | None = None,
    ) -> list[dict[str, Any]]:
        """TransactWriteItems entries creating an account (and its signup grant).

        Returned rather than written, so registration can create the user and
        the account in one transaction. The grant is a ledger entry like any
        other change, so "balance = sum of ledger deltas" holds from the start.
        """
        _require_tier(tier)
        if signup_credits < 0:
            raise ValueError("signup_credits must not be negative")
        created_at = iso(now)
        account = {
            "PK": account_pk(account_id),
            "SK": ACCOUNT_SK,
            "accountId": account_id,
            "kind": kind,
            "ownerId": owner_id,
            "tier": tier,
            "credits": signup_credits,
            # Signup credits are purchased credits: they never lapse (API.md §15).
            "monthlyCredits": 0,
            "purchasedCredits": signup_credits,
            "heldCredits": 0,
            "subscriptionStatus": "none",
            "createdAt": created_at,
            # The time of the latest balance change. Every change is conditioned
            # on it (see credits.py), which keeps ledger order = commit order.
            "balanceChangedAt": created_at,
        }
        if name is not None:
            account["name"] = name
        items = [self._put(account, condition="attribute_not_exists(PK)")]
        if signup_credits > 0:
            entry = ledger_entry_item(
                account_id,
                entry_id=new_id("led"),
                delta=signup_credits,
                balance=signup_credits,
                reason="signup",
                key="signup",
                created_at=created_at,
            )
            items.append(self._put(entry, condition="attribute_not_exists(PK)"))
        return items

    def get(self, account_id: str) -> Account | None:  # type: ignore[override]
        item = super().get(account_pk(account_id), ACCOUNT_SK)
        return Account.from_item(item) if item else None

    def set_tier(self, account_id: str, tier: str) -> Account:
        _require_tier(tier)
        return self._update(account_id, {"tier": tier})

    def set_subscription_status(self, account_id: str, status: str, *, now: datetime | None = None) -> Account:
        if status not in SUBSCRIPTION_STATUSES:
            raise validation_error("subscriptionStatus", f"must be one of {', '.join(SUBSCRIPTION_STATUSES)}")
        # past_due keeps the tier for pastDueGraceDays from when it became past due (pastDueSince,
        # kept while it stays past due); any other status ends the grace period.
        changed_at = iso(now or datetime.now(UTC))
        values = {"subscriptionStatus": status, "subscriptionChangedAt": changed_at}
        if status == "past_due":
            return self._update(account_id, values, keep_or_set={"pastDueSince": changed_at})
        return self._update(account_id, values, remove=("pastDueSince",))

    def _update(
        self,
        account_id: str,
        values: dict[str, Any],
        *,
        keep_or_set: dict[str, Any] | None = None,
        remove: tuple[str, ...] = (),
    ) -> Account:
        request = update_request(
            self.table_name,
            {"PK": account_pk(account_id), "SK": ACCOUNT_SK},
            set_values=values,
            set_if_absent=keep_or_set,
            remove=remove,
            condition="attribute_exists(PK)",
        )
        try:
            response = self.client.update_item(**request, ReturnValues="ALL_NEW")
        except self.client.exceptions.ConditionalCheckFailedException:
            raise ConduitError("NOT_FOUND", "No account found with the provided ID") from None
        return Account.from_item(from_item(response["Attributes"]))

    def _put(self, values: dict[str, Any], *, condition: str) -> dict[str, Any]:
        return {"Put": {"TableName": self.table_name, "Item": to_item(values), "ConditionExpression": condition}}


def _require_tier(tier: str) -> None:
    if tier not in TIER_NAMES:
        raise validation_error("tier", f"must be one of {', '.join(TIER_NAMES)}")
