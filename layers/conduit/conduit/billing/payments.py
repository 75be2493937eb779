"""Billing (API.md §5): the card on file, credit purchases, auto top-up and plan changes, with Stripe.

Rules, in the order they are checked:
- the body (a credit amount must be one of the tiers file's `creditPacks`) → VALIDATION_ERROR;
- a subscription past due blocks buying, plan changes and enabling auto top-up → SUBSCRIPTION_PAST_DUE;
- no card on file → NO_PAYMENT_METHOD;
- only then Stripe: a declined card → PAYMENT_FAILED; Stripe unreachable or not configured → BILLING_UNAVAILABLE.

Credits bought are granted under the ledger key `stripe:<PaymentIntent id>`, by whichever
comes first: the purchase's own response, or the `payment_intent.succeeded` webhook. The
ledger's idempotency makes the second one a no-op, so a payment is credited once.

Every POST to Stripe carries an idempotency key: derived from the client's own
`Idempotency-Key` when it sends one (a retried request maps to the same Stripe call, so
a card is charged once), from the account for its customer, and from the claim for an
auto top-up (Lambda's retries of one top-up map to one charge).

Plan changes update the Stripe subscription directly (no Checkout page): the card is the
one on file, like purchases and top-ups. The tier and status then change when Stripe's
`customer.subscription.*` events arrive (stripe_events.py), the one place they are applied.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import Field

from conduit.billing import credits

from conduit.billing import stripe_api
from conduit.platform.errors import ConduitError, validation_error
from conduit.platform.ids import iso, new_id
from conduit.platform.observability import logger
from conduit.repositories.accounts import Account, SubscriptionStatus
from conduit.repositories.billing import AutoTopUp, BillingProfile, BillingRepository
from conduit.platform.settings import get_settings
from conduit.platform.tiers import CreditPack, get_tiers
from conduit.platform.views import Omitted, View

PURCHASE = "credits"  # PaymentIntent metadata `purpose`
TOP_UP = "auto_top_up"
GRANT_REASONS = {PURCHASE: "credit purchase", TOP_UP: "auto top-up"}


# --- reads ---------------------------------------------------------------------------


class TopUpFailure(View):
    reason: str
    failedAt: str


class AutoTopUpView(View):
    enabled: bool
    thresholdCredits: int = Field(description="A spend that leaves the balance below it buys topUpCredits")
    topUpCredits: int = Field(description="The credit pack bought (0 only while disabled)")
    lastFailure: TopUpFailure | None = Field(
        description="Why the last auto top-up failed (which turned it off), until it is set again"
    )

    @classmethod
    def of(cls, profile: BillingProfile) -> Self:
        settings = profile.auto_top_up
        return cls(
            enabled=settings.enabled,
            thresholdCredits=settings.threshold_credits,
            topUpCredits=settings.top_up_credits,
            lastFailure=profile.auto_top_up_failure,
        )


class BillingOverview(View):
    accountId: str
    tier: str
    credits: int = Field(description="The balance: monthlyCredits + purchasedCredits. Auto top-up looks at it")
    monthlyCredits: int = Field(
        description="Granted at each renewal (Stripe invoice.paid), spent first, lapsing at the next renewal (API.md §15)"
    )
    purchasedCredits: int = Field(description="Purchases, top-ups, signup credits and admin grants: they never lapse")
    subscriptionStatus: SubscriptionStatus
    hasPaymentMethod: bool = Field(
        description="Whether a card is on file (POST /billing/payment-methods/setup adds one)"
    )
    autoTopUp: AutoTopUpView


class CardSetupStarted(View):
    clientSecret: str = Field(description="The Stripe SetupIntent's client secret, for Stripe.js to collect the card")


class PurchaseResult(View):
    paymentIntentId: str
    status: str = Field(description="The PaymentIntent's status: succeeded, or processing (credited when it settles)")
    credits: int = Field(description="The credits bought")
    balance: Annotated[int | None, Omitted] = Field(
        None, description="The balance after the grant, once the payment succeeded"
    )


class PlanChanged(View):
    tier: str = Field(description="The tier asked for; it is applied when Stripe confirms the subscription")
    subscriptionId: str | None = Field(
        description="The Stripe subscription; null when there is none (free, never subscribed)"
    )
    status: str = Field(
        description="The Stripe subscription's status (the account's subscription status when there is none)"
    )
    cancelAtPeriodEnd: Annotated[bool | None, Omitted] = Field(
        None, description="true: a move to free, effective when the paid period ends"
    )


def overview(account: Account) -> dict[str, Any]:
    """GET /billing: the account's tier, balance, subscription, card and auto top-up."""
    # The billing state lives on the account item, which the gate has just read (consistently).
    profile = BillingProfile.from_item(account.item) if account.item is not None else _profile(account.account_id)
    return BillingOverview(
        accountId=profile.account.account_id,
        tier=profile.account.tier,
        credits=profile.account.credits,
        monthlyCredits=profile.account.monthly_credits,
        purchasedCredits=profile.account.purchased_credits,
        subscriptionStatus=profile.account.subscription_status,
        hasPaymentMethod=profile.payment_method_id is not None,
        autoTopUp=AutoTopUpView.of(profile),
    ).body()


def credit_pack(amount: int, field: str = "credits") -> CreditPack:
    """The pack of `amount` credits; any other amount → VALIDATION_ERROR on `field`, naming the packs."""
    packs = get_tiers().credit_packs
    for pack in packs:
        if pack.credits == amount:
            return pack
    offered = ", ".join(str(pack.credits) for pack in packs) or "none"
    raise validation_error(field, f"must be one of the credit packs: {offered}")


# --- the card ------------------------------------------------------------------------


def create_setup_intent(account: Account, client_key: str | None) -> dict[str, str]:
    """A SetupIntent for adding a card (saved for off-session charges). The card is on file once
    Stripe confirms it (`setup_intent.succeeded`)."""
    profile = _profile(account.account_id)
    customer = ensure_customer(profile)
    with stripe_api.calling_stripe("setup intent"):
        intent = stripe_api.client().v1.setup_intents.create(
            params={
                "customer": customer,
                "usage": "off_session",
                "payment_method_types": ["card"],
                "metadata": {"accountId": account.account_id},
            },
            options={"idempotency_key": stripe_idempotency_key("setup", account.account_id, client_key)},
        )
    return CardSetupStarted(clientSecret=intent.client_secret).body()


def ensure_customer(profile: BillingProfile) -> str:
    """The account's Stripe customer, created on first use (`metadata.accountId`)."""
    if profile.customer_id is not None:
        return profile.customer_id
    account = profile.account
    params: dict[str, Any] = {"metadata": {"accountId": account.account_id}}
    if account.name:
        params["name"] = account.name
    with stripe_api.calling_stripe("customer"):
        # Keyed on the account: concurrent first uses get the same customer from Stripe.
        customer = stripe_api.client().v1.customers.create(
            params=params, options={"idempotency_key": f"customer:{account.account_id}"}
        )
    return BillingRepository().claim_customer(account.account_id, customer.id)


# --- buying credits ------------------------------------------------------------------------


def purchase_credits(account: Account, amount: int, client_key: str | None) -> dict[str, Any]:
    """Charge the card on file for a credit pack, off-session, and grant the credits."""
    pack = credit_pack(amount)
    profile = _profile(account.account_id)
    _require_good_standing(profile)
    _require_card(profile)
    key = stripe_idempotency_key("purchase", account.account_id, client_key)
    return _charge(profile, pack, PURCHASE, key)


def grant_paid_credits(account_id: str, payment_intent_id: str, amount: int, purpose: str) -> int:
    """Credit a succeeded payment, once per PaymentIntent whoever asks (response or webhook)."""
    reason = f"{GRANT_REASONS.get(purpose, 'credit purchase')}: {amount} credits"
    return credits.grant(account_id, amount, reason, key=f"stripe:{payment_intent_id}")


def _charge(profile: BillingProfile, pack: CreditPack, purpose: str, key: str, claim: str | None = None) -> dict[str, Any]:
    account_id = profile.account.account_id
    customer = ensure_customer(profile)
    metadata = {"accountId": account_id, "credits": str(pack.credits), "purpose": purpose}
    if claim is not None:
        metadata["claim"] = claim
    with stripe_api.calling_stripe("payment intent"):
        intent = stripe_api.client().v1.payment_intents.create(
            params={
                "amount": int(pack.price_usd * Decimal(100)),
                "currency": "usd",
                "customer": customer,
                "payment_method": profile.payment_method_id,
                "off_session": True,
                "confirm": True,
                "description": f"{pack.credits} Conduit credits",
                "metadata": metadata,
            },
            options={"idempotency_key": key},
        )
    result = PurchaseResult(paymentIntentId=intent.id, status=intent.status, credits=pack.credits)
    if intent.status == "succeeded":
        result.balance = grant_paid_credits(account_id, intent.id, pack.credits, purpose)
        return result.body()
    if intent.status == "processing":
        return result.body()  # granted by the payment_intent.succeeded webhook when it settles
    # Off-session, a card that needs the customer is a card error; any other state is one too.
    raise ConduitError("PAYMENT_FAILED", stripe_api.AUTHENTICATION_REQUIRED_MESSAGE)


# --- auto top-up -----------------------------------------------------------------------


def set_auto_top_up(account: Account, enabled: bool, threshold: int, top_up_credits: int) -> dict[str, Any]:
    """PUT /billing/auto-topup. Enabling needs a pack amount, good standing and a card."""
    if enabled or top_up_credits:
        credit_pack(top_up_credits, "topUpCredits")  # a stored amount is always one that can be bought
    if enabled and threshold < 1:
        raise validation_error("thresholdCredits", "must be at least 1 when auto top-up is enabled")
    profile = _profile(account.account_id)
    if enabled:
        _require_good_standing(profile)
        _require_card(profile)
    billing = BillingRepository()
    billing.set_auto_top_up(account.account_id, AutoTopUp(enabled, threshold, top_up_credits), int(time.time()))
    return AutoTopUpView.of(_profile(account.account_id)).body()


def run_top_up(account_id: str, claim: str) -> dict[str, Any]:
    """The asynchronous half of an auto top-up (the billing function, invoked by auto_top_up.start).

    Charges the configured pack if the claim is still current and the balance still under
    the threshold. A permanent failure (declined, no card, past due, Stripe not configured)
    turns auto top-up off and records why; a transient one (Stripe unreachable) is raised,
    keeping the claim, so Lambda's retry charges under the same idempotency key.
    """
    billing = BillingRepository()
    profile = billing.profile(account_id)
    if profile is None or profile.top_up_claim != claim:
        return {"outcome": "skipped: the claim is no longer current"}
    settings = profile.auto_top_up
    if not settings.enabled or profile.account.credits >= settings.threshold_credits:
        billing.release_top_up(account_id, claim)
        return {"outcome": "skipped: not needed any more"}
    try:
        pack = credit_pack(settings.top_up_credits, "topUpCredits")
        _require_good_standing(profile)
        _require_card(profile)
        if not stripe_api.is_configured():
            raise ConduitError("BILLING_UNAVAILABLE", "Billing is not configured on this server (no Stripe API key)")
        result = _charge(profile, pack, TOP_UP, key=f"topup:{account_id}:{claim}", claim=claim)
    except ConduitError as error:
        if error.code == "BILLING_UNAVAILABLE" and stripe_api.is_configured():
            raise  # transient: retried by Lambda under the same claim and idempotency key
        now = datetime.now(UTC)
        billing.fail_top_up(account_id, error.message, iso(now), not_before=int(now.timestamp()), claim=claim)
        logger.info("auto top-up failed; turned off", extra={"accountId": account_id, "code": error.code})
        return {"outcome": "failed", "code": error.code, "reason": error.message}
    if result["status"] == "succeeded":
        billing.release_top_up(account_id, claim)
    # "processing": the claim stays until the payment_intent webhook settles it (or it expires).
    return {"outcome": result["status"], "paymentIntentId": result["paymentIntentId"]}


# --- plan changes ----------------------------------------------------------------------


def change_subscription(account: Account, tier: str, client_key: str | None) -> dict[str, Any]:
    """POST /billing/subscription: subscribe, change tier, or (tier free) cancel at the period's end."""
    get_tiers().tier(tier)  # an unknown tier → VALIDATION_ERROR
    profile = _profile(account.account_id)
    _require_good_standing(profile)
    key = stripe_idempotency_key("subscription", account.account_id, client_key)
    metadata = {"accountId": account.account_id, "tier": tier}
    if tier == "free":
        if profile.subscription_id is None:
            return PlanChanged(tier="free", subscriptionId=None, status=profile.account.subscription_status).body()
        with stripe_api.calling_stripe("cancel subscription"):
            subscription = stripe_api.client().v1.subscriptions.update(
                profile.subscription_id,
                params={"cancel_at_period_end": True},
                options={"idempotency_key": key},
            )
        return _plan_change(subscription, tier)
    price = get_settings().tier_prices.get(tier)
    if price is None:
        raise validation_error("tier", f"the {tier} plan cannot be bought on this server (no Stripe price is configured)")
    _require_card(profile)
    stripe = stripe_api.client()
    with stripe_api.calling_stripe("subscription"):
        if profile.subscription_id is None:
            subscription = stripe.v1.subscriptions.create(
                params={
                    "customer": ensure_customer(profile),
                    "items": [{"price": price}],
                    "default_payment_method": profile.payment_method_id,
                    "off_session": True,
                    "payment_behavior": "error_if_incomplete",
                    "metadata": metadata,
                },
                options={"idempotency_key": key},
            )
        else:
            current = stripe.v1.subscriptions.retrieve(profile.subscription_id)
            subscription = stripe.v1.subscriptions.update(
                profile.subscription_id,
                params={
                    "items": [{"id": current["items"]["data"][0]["id"], "price": price}],
                    "default_payment_method": profile.payment_method_id,
                    "cancel_at_period_end": False,
                    "proration_behavior": "always_invoice",
                    "payment_behavior": "error_if_incomplete",
                    "off_session": True,
                    "metadata": metadata,
                },
                options={"idempotency_key": key},
            )
    return _plan_change(subscription, tier)


def _plan_change(subscription: Any, tier: str) -> dict[str, Any]:
    return PlanChanged(
        tier=tier,
        subscriptionId=subscription.id,
        status=subscription.status,
        cancelAtPeriodEnd=bool(subscription["cancel_at_period_end"]),
    ).body()


# --- shared checks -----------------------------------------------------------------------


def stripe_idempotency_key(kind: str, account_id: str, client_key: str | None) -> str:
    """The client's Idempotency-Key maps a retry to the same Stripe call; without one, each request is new."""
    return f"{kind}:{account_id}:{client_key}" if client_key else f"{kind}:{account_id}:{new_id('req')}"


def _profile(account_id: str) -> BillingProfile:
    profile = BillingRepository().profile(account_id)
    if profile is None:
        raise ConduitError("NOT_FOUND", "No account found with the provided ID")
    return profile


def _require_good_standing(profile: BillingProfile) -> None:
    if profile.account.subscription_status == "past_due":
        raise ConduitError(
            "SUBSCRIPTION_PAST_DUE", "Your subscription payment is overdue: update your card on the Billing page first"
        )


def _require_card(profile: BillingProfile) -> None:
    if profile.payment_method_id is None:
        raise ConduitError("NO_PAYMENT_METHOD", "No card on file: add one on the Billing page first")
