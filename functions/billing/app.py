"""/billing: overview, ledger, card setup, credit purchases, auto top-up and plan changes (API.md §5).

The one API function that talks to Stripe (conduit.billing.payments). The same function runs auto
top-ups: conduit.billing.auto_top_up invokes it asynchronously with a top-up event, which never
comes from API Gateway.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Header
from pydantic import Field, StrictBool, StrictInt

from conduit.billing import auto_top_up
from conduit.billing import payments as billing
from conduit.billing import credits
from conduit.billing.credits import LedgerEntry
from conduit.identity.access import account_for
from conduit.http.api import handler_for, make_resolver
from conduit.billing.payments import AutoTopUpView, BillingOverview, CardSetupStarted, PlanChanged, PurchaseResult
from conduit.platform.observability import logger
from conduit.http.routes import Cursor, CurrentCaller, Limit, Page, StrictBody, WorkspaceId, answers, page_body

app = make_resolver()

# Retries with the same key make the same Stripe call, so a card is charged once.
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
]
BodyWorkspaceId = Field(None, min_length=1, max_length=64)


class CardSetup(StrictBody):
    workspaceId: str | None = BodyWorkspaceId


class CreditPurchase(StrictBody):
    credits: StrictInt = Field(ge=1, le=10_000_000, description="One of the tiers file's credit packs")
    workspaceId: str | None = BodyWorkspaceId


class AutoTopUpSettings(StrictBody):
    enabled: StrictBool
    thresholdCredits: StrictInt = Field(ge=0, le=10_000_000)
    topUpCredits: StrictInt = Field(ge=0, le=10_000_000, description="A credit pack (0 only while disabled)")
    workspaceId: str | None = BodyWorkspaceId


class PlanChange(StrictBody):
    tier: str = Field(min_length=1, max_length=32, description="free cancels at the end of the paid period")
    workspaceId: str | None = BodyWorkspaceId


class LedgerPage(Page[LedgerEntry]):
    pass


BILLING_ROLE = ("PERMISSION_DENIED", "Billing is the workspace owner's (or an API key made for another account)")
NO_WORKSPACE = ("WORKSPACE_NOT_FOUND", "No workspace with this id of which the caller is a member")
STRIPE_DOWN = ("BILLING_UNAVAILABLE", "Stripe is not configured on this server, or could not be reached")
PAST_DUE = ("SUBSCRIPTION_PAST_DUE", "The subscription is past due: update the card first")
NO_CARD = ("NO_PAYMENT_METHOD", "No card on file: add one first")
KEY_REUSED = "an Idempotency-Key already used for a different request"


@app.get(
    "/billing",
    tags=["Billing"],
    summary="Billing overview of the account",
    **answers(NO_WORKSPACE, BILLING_ROLE, description="The overview"),
)
def overview(caller: CurrentCaller, workspace_id: WorkspaceId = None) -> BillingOverview:
    return billing.overview(account_for(caller, workspace_id, "billing"))


@app.get(
    "/billing/ledger",
    tags=["Billing"],
    summary="Credit ledger, newest first",
    **answers(NO_WORKSPACE, BILLING_ROLE, description="A page of ledger entries"),
)
def ledger(
    caller: CurrentCaller,
    workspace_id: WorkspaceId = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> LedgerPage:
    return page_body(credits.ledger_page(account_for(caller, workspace_id, "billing").account_id, limit, cursor))


@app.post(
    "/billing/payment-methods/setup",
    tags=["Billing"],
    summary="Start adding a card (Stripe SetupIntent)",
    description="The card is on file once Stripe confirms it (its setup_intent.succeeded webhook).",
    **answers(
        ("VALIDATION_ERROR", f"The body, or {KEY_REUSED}"),
        STRIPE_DOWN,
        NO_WORKSPACE,
        BILLING_ROLE,
        description="The SetupIntent",
    ),
)
def setup_card(request: CardSetup, caller: CurrentCaller, idempotency_key: IdempotencyKey = None) -> CardSetupStarted:
    return billing.create_setup_intent(account_for(caller, request.workspaceId, "billing"), idempotency_key)


@app.post(
    "/billing/credits/purchase",
    tags=["Billing"],
    summary="Buy a credit pack with the card on file",
    description="Charged off-session; with the same Idempotency-Key a retry charges once.",
    **answers(
        ("VALIDATION_ERROR", f"`credits` is not one of the tiers file's credit packs, or {KEY_REUSED}"),
        PAST_DUE,
        NO_CARD,
        ("PAYMENT_FAILED", "The card was declined (or needs its holder)"),
        STRIPE_DOWN,
        NO_WORKSPACE,
        BILLING_ROLE,
        description="The payment (credited at once when it succeeded)",
    ),
)
def purchase(request: CreditPurchase, caller: CurrentCaller, idempotency_key: IdempotencyKey = None) -> PurchaseResult:
    return billing.purchase_credits(account_for(caller, request.workspaceId, "billing"), request.credits, idempotency_key)


@app.put(
    "/billing/auto-topup",
    tags=["Billing"],
    summary="Set auto top-up",
    description="When a spend leaves the balance below thresholdCredits, the topUpCredits pack is bought with the card on file. "
    "A failed top-up turns it off and says why in lastFailure.",
    **answers(
        ("VALIDATION_ERROR", "topUpCredits is not a credit pack, or thresholdCredits is 0 while enabling"),
        PAST_DUE,
        NO_CARD,
        NO_WORKSPACE,
        BILLING_ROLE,
        description="The auto top-up settings",
    ),
)
def set_auto_top_up(request: AutoTopUpSettings, caller: CurrentCaller) -> AutoTopUpView:
    account = account_for(caller, request.workspaceId, "billing")
    return billing.set_auto_top_up(account, request.enabled, request.thresholdCredits, request.topUpCredits)


@app.post(
    "/billing/subscription",
    tags=["Billing"],
    summary="Subscribe or change plan",
    description="Starts or changes the Stripe subscription with the card on file; the tier changes when Stripe confirms it. "
    "`free` cancels at the end of the paid period.",
    **answers(
        ("VALIDATION_ERROR", f"An unknown tier, one this server sells no Stripe price for, or {KEY_REUSED}"),
        PAST_DUE,
        NO_CARD,
        ("PAYMENT_FAILED", "The card was declined"),
        STRIPE_DOWN,
        NO_WORKSPACE,
        BILLING_ROLE,
        description="The subscription",
    ),
)
def change_plan(request: PlanChange, caller: CurrentCaller, idempotency_key: IdempotencyKey = None) -> PlanChanged:
    return billing.change_subscription(account_for(caller, request.workspaceId, "billing"), request.tier, idempotency_key)


_api_handler = handler_for(app)


@logger.inject_lambda_context(clear_state=True)
def _top_up_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return billing.run_top_up(str(event["accountId"]), str(event["claim"]))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("source") == auto_top_up.TOP_UP_SOURCE:
        return _top_up_handler(event, context)
    return _api_handler(event, context)
