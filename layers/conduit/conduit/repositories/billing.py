"""Billing state: Stripe ids, the card on file, auto top-up and the subscription, on the account item.

Billing attributes live on the account item (`ACCOUNT#<accountId>` / `ACCOUNT`, see TABLE.md)
rather than an item of their own: the ledger's compare-and-set already reads that item on
every spend, so the auto top-up threshold comes with it for free, and the gate's one
BatchGetItem already brings the subscription status and tier. None of these writes touches
`credits` or `balanceChangedAt`, so they never disturb the ledger.

Every write that Stripe events drive is monotonic: it carries the event's `created` time and
is conditioned on being no older than the last one applied to the same attribute, because
Stripe delivers events out of order and retries them for days.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conduit.repositories.accounts import ACCOUNT_SK, Account, account_key, account_pk
from conduit.repositories.base import ConditionsFailed, Repository, from_item, to_item, update_request, write_transaction

CUSTOMER_PREFIX = "STRIPECUSTOMER#"


def customer_key(customer_id: str) -> dict[str, Any]:
    return to_item({"PK": f"{CUSTOMER_PREFIX}{customer_id}", "SK": "STRIPECUSTOMER"})


@dataclass(frozen=True, slots=True)
class AutoTopUp:
    enabled: bool = False
    threshold_credits: int = 0
    top_up_credits: int = 0


@dataclass(frozen=True, slots=True)
class BillingProfile:
    account: Account
    customer_id: str | None
    payment_method_id: str | None
    auto_top_up: AutoTopUp
    auto_top_up_failure: dict[str, str] | None  # {reason, failedAt} of the top-up that disabled it
    subscription_id: str | None
    top_up_claim: str | None  # the auto top-up in flight, if any
    top_up_claim_until: int | None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> BillingProfile:
        settings = item.get("autoTopUp") or {}
        failure = item.get("autoTopUpFailure")
        return cls(
            account=Account.from_item(item),
            customer_id=item.get("stripeCustomerId"),
            payment_method_id=item.get("paymentMethodId"),
            auto_top_up=AutoTopUp(
                enabled=bool(settings.get("enabled", False)),
                threshold_credits=int(settings.get("thresholdCredits", 0)),
                top_up_credits=int(settings.get("topUpCredits", 0)),
            ),
            auto_top_up_failure={"reason": failure["reason"], "failedAt": failure["failedAt"]} if failure else None,
            subscription_id=item.get("stripeSubscriptionId"),
            top_up_claim=item.get("topUpClaim"),
            top_up_claim_until=int(item["topUpClaimUntil"]) if "topUpClaimUntil" in item else None,
        )


def top_up_threshold(account_item: dict[str, Any]) -> int | None:
    """From a plain account item: the balance under which a spend starts a top-up (None: auto top-up off)."""
    settings = account_item.get("autoTopUp") or {}
    return int(settings["thresholdCredits"]) if settings.get("enabled") else None


class BillingRepository(Repository):
    # --- reads ------------------------------------------------------------

    def profile(self, account_id: str) -> BillingProfile | None:
        """The account with its billing state (strongly consistent)."""
        item = self.get(account_pk(account_id), "ACCOUNT")
        return BillingProfile.from_item(item) if item else None

    def account_for_customer(self, customer_id: str) -> str | None:
        """The account a Stripe customer belongs to (events that carry no accountId of their own)."""
        response = self.client.get_item(TableName=self.table_name, Key=customer_key(customer_id), ConsistentRead=True)
        item = response.get("Item")
        return from_item(item)["accountId"] if item else None

    # --- the Stripe customer -------------------------------------------------

    def claim_customer(self, account_id: str, customer_id: str) -> str:
        """Record the account's Stripe customer, once; the customer in force (the first recorded wins)."""
        try:
            write_transaction(
                self.client,
                [
                    self._update(
                        account_id,
                        "SET stripeCustomerId = :customer",
                        "attribute_exists(PK) AND attribute_not_exists(stripeCustomerId)",
                        {":customer": customer_id},
                    ),
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": {**customer_key(customer_id), **to_item({"accountId": account_id})},
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                ],
            )
            return customer_id
        except ConditionsFailed:
            profile = self.profile(account_id)
            if profile is None or profile.customer_id is None:
                raise RuntimeError(f"Stripe customer {customer_id} already belongs to another account") from None
            return profile.customer_id

    # --- the card on file -----------------------------------------------------

    def set_payment_method(self, account_id: str, payment_method_id: str, event_created: int) -> bool:
        """Make a card the one charged, unless a newer card event was applied already."""
        return self._apply(
            account_id,
            "SET paymentMethodId = :pm, paymentMethodAt = :at",
            "attribute_exists(PK) AND (attribute_not_exists(paymentMethodAt) OR paymentMethodAt <= :at)",
            {":pm": payment_method_id, ":at": event_created},
        )

    def clear_payment_method(self, account_id: str, payment_method_id: str, event_created: int) -> bool:
        """Forget the card if it is the one on file and no newer card event was applied."""
        return self._apply(
            account_id,
            "REMOVE paymentMethodId SET paymentMethodAt = :at",
            "paymentMethodId = :pm AND (attribute_not_exists(paymentMethodAt) OR paymentMethodAt <= :at)",
            {":pm": payment_method_id, ":at": event_created},
        )

    # --- auto top-up ---------------------------------------------------------------

    def set_auto_top_up(self, account_id: str, settings: AutoTopUp, changed_at: int) -> None:
        """Store the settings; a new setting clears the record of the failure that disabled the last one."""
        self._apply(
            account_id,
            "SET autoTopUp = :settings, autoTopUpChangedAt = :at REMOVE autoTopUpFailure",
            "attribute_exists(PK)",
            {
                ":settings": {
                    "enabled": settings.enabled,
                    "thresholdCredits": settings.threshold_credits,
                    "topUpCredits": settings.top_up_credits,
                },
                ":at": changed_at,
            },
        )

    def claim_top_up(self, account_id: str, claim: str, *, now: int, until: int) -> bool:
        """Mark a top-up in flight; False if one already is (or auto top-up is off). One at a time."""
        return self._apply(
            account_id,
            "SET topUpClaim = :claim, topUpClaimUntil = :until",
            "autoTopUp.enabled = :true AND (attribute_not_exists(topUpClaim) OR topUpClaimUntil < :now)",
            {":claim": claim, ":until": until, ":now": now, ":true": True},
        )

    def release_top_up(self, account_id: str, claim: str) -> bool:
        """End the top-up in flight, if it is still this one."""
        return self._apply(account_id, "REMOVE topUpClaim, topUpClaimUntil", "topUpClaim = :claim", {":claim": claim})

    def fail_top_up(self, account_id: str, reason: str, failed_at: str, *, not_before: int, claim: str | None) -> bool:
        """Turn auto top-up off and record why, unless the settings changed after the failure
        (`not_before`: when it happened, epoch s). Ends the claim when it is still `claim`."""
        values: dict[str, Any] = {
            ":false": False,
            ":failure": {"reason": reason[:500], "failedAt": failed_at},
            ":at": not_before,
        }
        update = "SET autoTopUp.enabled = :false, autoTopUpFailure = :failure"
        condition = "attribute_exists(autoTopUp) AND (attribute_not_exists(autoTopUpChangedAt) OR autoTopUpChangedAt <= :at)"
        if claim is not None:
            update += " REMOVE topUpClaim, topUpClaimUntil"
            condition += " AND (attribute_not_exists(topUpClaim) OR topUpClaim = :claim)"
            values[":claim"] = claim
        return self._apply(account_id, update, condition, values)

    # --- the subscription ---------------------------------------------------------

    def apply_subscription(
        self,
        account_id: str,
        *,
        subscription_id: str,
        status: str,
        tier: str | None,
        event_created: int,
        changed_at: str,
        only_current: bool = False,
    ) -> bool:
        """Apply a subscription's state as of `event_created`, unless a newer state was applied already.

        `canceled` drops the account to free and forgets the subscription, but only if it is
        the account's subscription (an old one ending must not cancel a newer one). `past_due`
        starts the grace period (`pastDueSince`, kept while it stays past due); other statuses end it.
        `only_current`: apply only if `subscription_id` is the account's subscription.
        """
        values: dict[str, Any] = {"subscriptionStatus": status, "subscriptionEventAt": event_created, "subscriptionChangedAt": changed_at}
        removals = []
        condition = "attribute_exists(PK) AND (attribute_not_exists(subscriptionEventAt) OR subscriptionEventAt <= :at)"
        if status == "canceled":
            tier = "free"
            removals.append("stripeSubscriptionId")
            condition += " AND (attribute_not_exists(stripeSubscriptionId) OR stripeSubscriptionId = :sub)"
        else:
            values["stripeSubscriptionId"] = subscription_id
        if only_current:
            condition += " AND stripeSubscriptionId = :sub"
        if tier is not None:
            values["tier"] = tier
        if status == "past_due":
            keep = {"pastDueSince": changed_at}
        else:
            keep = {}
            removals.append("pastDueSince")
        request = update_request(
            self.table_name,
            {"PK": account_pk(account_id), "SK": ACCOUNT_SK},
            set_values=values,
            set_if_absent=keep,
            remove=tuple(removals),
            condition=condition,
            # :sub only where the condition names it (DynamoDB refuses an unused value)
            condition_values={":at": event_created, **({":sub": subscription_id} if ":sub" in condition else {})},
        )
        return self._applied(request)

    # --- helpers -------------------------------------------------------------------

    def _update(self, account_id: str, update: str, condition: str, values: dict[str, Any]) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": account_key(account_id),
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeValues": to_item(values),
            }
        }

    def _apply(self, account_id: str, update: str, condition: str, values: dict[str, Any]) -> bool:
        """One conditional UpdateItem of the account item; False when its condition does not hold."""
        return self._applied(self._update(account_id, update, condition, values)["Update"])

    def _applied(self, request: dict[str, Any]) -> bool:
        try:
            self.client.update_item(**request)
            return True
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
