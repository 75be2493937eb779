"""Stripe webhooks (API.md §5): verify, apply each event once, in a safe order.

- Verification: the stripe library's `WebhookSignature.verify_header` on the RAW body with
  STRIPE_WEBHOOK_SECRET and a 300 s tolerance (the body parsed by safe_json first). A missing, forged or stale signature, or a body that is not an
  event → 400 VALIDATION_ERROR, before anything is read or written.
- Once per event id: Powertools Idempotency on the Conduit table (`IDEMPOTENCY#stripe-event`,
  kept 7 days, longer than Stripe retries). A duplicate gets the first delivery's answer; one
  arriving while the first is still being applied gets 503 BILLING_UNAVAILABLE, so Stripe
  retries it (a 2xx would let Stripe forget an event whose first delivery may yet fail). A
  failed application leaves no record, so Stripe's retry applies it.
- Effects are idempotent on their own as well: credits are granted under `stripe:<PaymentIntent
  or Invoice id>`, so two different events for one payment grant once; subscription, card and
  auto top-up changes are applied only if no newer event (by Stripe's `created`) was applied
  to the same state, so late deliveries never roll anything back.
- Unknown event types and events for accounts Conduit does not know are acknowledged (200)
  and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conduit.billing import payments as billing

from conduit.billing import credits

from conduit.platform import safe_json

from conduit.billing import stripe_api
from conduit.platform.errors import ConduitError, validation_error
from conduit.platform.ids import iso
from conduit.platform.observability import logger
from conduit.repositories.accounts import AccountsRepository
from conduit.platform.aws import dynamodb_client
from conduit.repositories.billing import BillingRepository
from conduit.platform.settings import get_settings
from conduit.platform.tiers import TIER_NAMES, get_tiers
from conduit.platform.views import View

TOLERANCE_SECONDS = 300
EVENT_RECORD_SECONDS = 7 * 86400  # Stripe retries an event for up to 3 days
IDEMPOTENCY_PARTITION = "IDEMPOTENCY#stripe-event"

# Stripe subscription status → Conduit's (API.md §4). `incomplete` (a first payment not yet
# made) changes nothing: plans are bought with payment_behavior=error_if_incomplete.
SUBSCRIPTION_STATUSES = {
    "active": "active",
    "trialing": "active",
    "past_due": "past_due",
    "unpaid": "past_due",
    "canceled": "canceled",
    "incomplete_expired": "canceled",
    "paused": "canceled",
}
MONTHLY_BILLING_REASONS = {"subscription_create", "subscription_cycle"}


class _EventData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    object: dict[str, Any]
    previous_attributes: dict[str, Any] | None = None


class StripeEvent(BaseModel):
    """What Conduit reads of an event (the rest is ignored)."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=255)
    created: int = Field(ge=0)
    data: _EventData


class EventReceived(View):
    """The acknowledgement of a delivery (a duplicate gets the first delivery's)."""

    received: bool = Field(description="Always true: the event is applied, or was already")
    eventId: str
    type: str = Field(description="The Stripe event type")
    outcome: str = Field(description="What it changed, or why it changed nothing (`ignored: …`)")


# --- the webhook ------------------------------------------------------------------------


def handle(payload: str, signature: str | None, lambda_context: Any = None) -> dict[str, Any]:
    """Verify a delivery and apply its event at most once; the acknowledgement body."""
    event = verify(payload, signature)
    config = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=EVENT_RECORD_SECONDS)
    if lambda_context is not None:
        config.register_lambda_context(lambda_context)  # an invocation that dies frees the event when it times out
    apply_once = idempotent_function(
        apply_event, data_keyword_argument="event", persistence_store=_persistence(), config=config, key_prefix="stripe-event"
    )
    try:
        return apply_once(event=event.model_dump())
    except IdempotencyAlreadyInProgressError:
        raise ConduitError(
            "BILLING_UNAVAILABLE", "This event is being applied by another delivery; retry it later"
        ) from None


def verify(payload: str, signature: str | None) -> StripeEvent:
    secret = stripe_api.webhook_secret()
    if not secret:
        raise ConduitError("BILLING_UNAVAILABLE", "Stripe webhooks are not configured on this server (no signing secret)")
    import stripe  # here, not at import: only this path of the webhook function needs the SDK

    try:
        parsed = safe_json.loads(payload)  # ours first: the SDK's json.loads raises RecursionError on deep nesting
        stripe.WebhookSignature.verify_header(payload, signature or "", secret, tolerance=TOLERANCE_SECONDS)
        if not isinstance(parsed, dict):
            raise TypeError("not an object")
    except stripe.SignatureVerificationError as error:
        # Missing, forged, for another secret, or older than the tolerance (a replay).
        reason = error.user_message or str(error)
        raise validation_error("Stripe-Signature", f"is not a valid Stripe signature of this body ({reason})") from None
    except (ValueError, TypeError, AttributeError):  # signed, but not a JSON object
        raise validation_error("body", "is not a Stripe event (malformed JSON)") from None
    try:
        return StripeEvent.model_validate_json(payload)
    except ValidationError:
        raise validation_error("body", "is not a Stripe event (id, type, created and data.object are required)") from None


def _persistence() -> DynamoDBPersistenceLayer:
    # Built per call, on the layer's one DynamoDB client (cheap: no I/O until it is used).
    return DynamoDBPersistenceLayer(
        table_name=get_settings().table_name,
        key_attr="PK",
        sort_key_attr="SK",
        static_pk_value=IDEMPOTENCY_PARTITION,
        expiry_attr="expiresAt",  # the table's TTL attribute
        boto3_client=dynamodb_client(),
    )


# --- applying one event ------------------------------------------------------------------


def apply_event(event: dict[str, Any]) -> dict[str, Any]:
    """Apply one verified event; its outcome. Safe to repeat (see the module docstring)."""
    parsed = StripeEvent.model_validate(event)

    def answer(outcome: str) -> dict[str, Any]:
        return EventReceived(received=True, eventId=parsed.id, type=parsed.type, outcome=outcome).body()

    handler = HANDLERS.get(parsed.type)
    if handler is None:
        return answer("ignored: event type not handled")
    account_id = _account_of(parsed)
    if account_id is None or AccountsRepository().get(account_id) is None:
        logger.info("Stripe event for no known account", extra={"eventId": parsed.id, "type": parsed.type})
        return answer("ignored: unknown account")
    outcome = handler(account_id, parsed.data.object, parsed)
    logger.info("Stripe event applied", extra={"eventId": parsed.id, "type": parsed.type, "outcome": outcome})
    return answer(outcome)


def _payment_succeeded(account_id: str, intent: dict[str, Any], event: StripeEvent) -> str:
    metadata = intent.get("metadata") or {}
    purpose = metadata.get("purpose")
    if purpose not in (billing.PURCHASE, billing.TOP_UP):
        return "ignored: not a credit purchase"
    amount = _positive_int(metadata.get("credits"))
    if amount is None:
        logger.warning("credit payment without a credit amount", extra={"paymentIntent": intent.get("id")})
        return "ignored: no credit amount in metadata"
    billing.grant_paid_credits(account_id, str(intent["id"]), amount, purpose)
    if purpose == billing.TOP_UP and metadata.get("claim"):
        BillingRepository().release_top_up(account_id, str(metadata["claim"]))
    return "credits granted"


def _payment_failed(account_id: str, intent: dict[str, Any], event: StripeEvent) -> str:
    metadata = intent.get("metadata") or {}
    if metadata.get("purpose") != billing.TOP_UP:
        return "recorded: the purchase failed (the buyer was answered PAYMENT_FAILED)"
    error = intent.get("last_payment_error") or {}
    reason = f"The payment was declined: {error.get('message') or error.get('code') or 'payment failed'}"
    changed = BillingRepository().fail_top_up(
        account_id, reason, _at(event), not_before=event.created, claim=metadata.get("claim")
    )
    return "auto top-up turned off" if changed else "ignored: auto top-up was changed since"


def _card_saved(account_id: str, intent: dict[str, Any], event: StripeEvent) -> str:
    method = _id_of(intent.get("payment_method"))
    if method is None:
        return "ignored: no payment method"
    customer = _id_of(intent.get("customer"))
    billing_repository = BillingRepository()
    if customer is not None:
        billing_repository.claim_customer(account_id, customer)
    applied = billing_repository.set_payment_method(account_id, method, event.created)
    return "card on file" if applied else "ignored: a newer card is on file"


def _card_removed(account_id: str, method: dict[str, Any], event: StripeEvent) -> str:
    applied = BillingRepository().clear_payment_method(account_id, str(method["id"]), event.created)
    return "card removed" if applied else "ignored: not the card on file"


def _invoice_paid(account_id: str, invoice: dict[str, Any], event: StripeEvent) -> str:
    if invoice.get("billing_reason") not in MONTHLY_BILLING_REASONS:
        return "ignored: not a monthly invoice"  # proration invoices of plan changes grant nothing
    tier = _tier_of(invoice) or AccountsRepository().get(account_id).tier
    monthly = get_tiers().tier(tier).monthly_credits
    if tier == "free" or monthly == 0:
        return "ignored: no monthly credits"
    # The monthly credits left lapse and the new ones are granted, once per invoice (API.md §15).
    credits.renew(account_id, monthly, f"monthly credits ({tier})", key=f"stripe:{invoice['id']}")
    return "monthly credits granted"


def _invoice_failed(account_id: str, invoice: dict[str, Any], event: StripeEvent) -> str:
    subscription = _subscription_of(invoice)
    if subscription is None:
        return "ignored: not a subscription invoice"
    applied = BillingRepository().apply_subscription(
        account_id,
        subscription_id=subscription,
        status="past_due",
        tier=None,
        event_created=event.created,
        changed_at=_at(event),
        only_current=True,
    )
    return "subscription past due" if applied else "ignored: not the current subscription, or older news"


def _subscription_changed(account_id: str, subscription: dict[str, Any], event: StripeEvent) -> str:
    status = "canceled" if event.type == "customer.subscription.deleted" else SUBSCRIPTION_STATUSES.get(
        str(subscription.get("status"))
    )
    if status is None:
        return f"ignored: status {subscription.get('status')}"
    applied = BillingRepository().apply_subscription(
        account_id,
        subscription_id=str(subscription["id"]),
        status=status,
        tier=_tier_of(subscription),
        event_created=event.created,
        changed_at=_at(event),
    )
    return f"subscription {status}" if applied else "ignored: older than the state applied, or not the account's subscription"


HANDLERS: dict[str, Callable[[str, dict[str, Any], StripeEvent], str]] = {
    "payment_intent.succeeded": _payment_succeeded,
    "payment_intent.payment_failed": _payment_failed,
    "setup_intent.succeeded": _card_saved,
    "payment_method.detached": _card_removed,
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _invoice_failed,
    "customer.subscription.created": _subscription_changed,
    "customer.subscription.updated": _subscription_changed,
    "customer.subscription.deleted": _subscription_changed,
}


# --- reading Stripe objects -----------------------------------------------------------------


def _account_of(event: StripeEvent) -> str | None:
    """The account of an event: metadata.accountId (objects Conduit creates carry it), else the customer."""
    target = event.data.object
    for metadata in _metadata_of(target):
        account_id = metadata.get("accountId")
        if isinstance(account_id, str) and account_id:
            return account_id
    # A detached payment method has lost its customer; the event still names it.
    customer = _id_of(target.get("customer")) or _id_of((event.data.previous_attributes or {}).get("customer"))
    return BillingRepository().account_for_customer(customer) if customer else None


def _metadata_of(target: dict[str, Any]) -> list[dict[str, Any]]:
    """The object's metadata, and for an invoice its subscription's (older and newer API versions)."""
    parent = (target.get("parent") or {}).get("subscription_details") or {}
    found = [target.get("metadata"), (target.get("subscription_details") or {}).get("metadata"), parent.get("metadata")]
    return [metadata for metadata in found if isinstance(metadata, dict)]


def _tier_of(target: dict[str, Any]) -> str | None:
    for metadata in _metadata_of(target):
        tier = metadata.get("tier")
        if tier in TIER_NAMES:
            return tier
    return None


def _subscription_of(invoice: dict[str, Any]) -> str | None:
    parent = (invoice.get("parent") or {}).get("subscription_details") or {}
    return _id_of(invoice.get("subscription")) or _id_of(parent.get("subscription"))


def _id_of(value: Any) -> str | None:
    """An id, whether Stripe sent it bare or expanded into its object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


MAX_PAYMENT_CREDITS = 10_000_000  # the largest amount a purchase or top-up may ask for (functions/billing)


def _positive_int(value: Any) -> int | None:
    # Plain ASCII digits only (not "1_000", "1e3", or 44 digits no DynamoDB number can hold).
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        return None
    number = int(text)
    return number if 0 < number <= MAX_PAYMENT_CREDITS else None


def _at(event: StripeEvent) -> str:
    return iso(datetime.fromtimestamp(event.created, UTC))
