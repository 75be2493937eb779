"""/billing: overview, ledger, card setup, credit purchases, auto top-up and plan changes (API.md §5).

The one API function that talks to Stripe (conduit.billing). The same function runs auto
top-ups: conduit.auto_top_up invokes it asynchronously with a top-up event, which never
comes from API Gateway.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Header
from pydantic import BaseModel, Field, StrictBool, StrictInt

from conduit import auto_top_up, billing, credits
from conduit.access import account_for
from conduit.api import handler_for, make_resolver
from conduit.observability import logger
from conduit.routes import Cursor, CurrentCaller, Limit, StrictBody, WorkspaceId, page_body

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


# --- response shapes (documentation: handlers return plain dicts built by conduit.billing) ---


class TopUpFailure(BaseModel):
    reason: str
    failedAt: str


class AutoTopUpView(BaseModel):
    enabled: bool
    thresholdCredits: int
    topUpCredits: int
    lastFailure: TopUpFailure | None = Field(description="Why the last auto top-up failed (which turned it off)")


class BillingOverview(BaseModel):
    accountId: str
    tier: str
    credits: int = Field(description="The balance: monthlyCredits + purchasedCredits. Auto top-up looks at it")
    monthlyCredits: int = Field(
        description="Granted at each renewal (Stripe invoice.paid), spent first, lapsing at the next renewal (API.md §15)"
    )
    purchasedCredits: int = Field(description="Purchases, top-ups, signup credits and admin grants: they never lapse")
    subscriptionStatus: str
    hasPaymentMethod: bool
    autoTopUp: AutoTopUpView


class LedgerEntry(BaseModel):
    id: str
    delta: int = Field(description="A priced model turn shows its actual cost, one entry per turn; a lapse is its own entry")
    balance: int = Field(description="The balance (the sum of both) after this entry")
    reason: str
    createdAt: str


class LedgerPage(BaseModel):
    items: list[LedgerEntry]
    nextCursor: str | None


def _returns(model: type[BaseModel]) -> dict:
    return {"responses": {200: {"description": "Successful Response", "content": {"application/json": {"model": model}}}}}


@app.get("/billing", tags=["Billing"], summary="Billing overview of the account", **_returns(BillingOverview))
def overview(caller: CurrentCaller, workspace_id: WorkspaceId = None) -> dict:
    return billing.overview(account_for(caller, workspace_id, "billing"))


@app.get("/billing/ledger", tags=["Billing"], summary="Credit ledger, newest first", **_returns(LedgerPage))
def ledger(
    caller: CurrentCaller,
    workspace_id: WorkspaceId = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> dict:
    return page_body(credits.ledger_page(account_for(caller, workspace_id, "billing").account_id, limit, cursor))


@app.post("/billing/payment-methods/setup", tags=["Billing"], summary="Start adding a card (Stripe SetupIntent)")
def setup_card(request: CardSetup, caller: CurrentCaller, idempotency_key: IdempotencyKey = None) -> dict:
    return billing.create_setup_intent(account_for(caller, request.workspaceId, "billing"), idempotency_key)


@app.post("/billing/credits/purchase", tags=["Billing"], summary="Buy a credit pack with the card on file")
def purchase(request: CreditPurchase, caller: CurrentCaller, idempotency_key: IdempotencyKey = None) -> dict:
    return billing.purchase_credits(account_for(caller, request.workspaceId, "billing"), request.credits, idempotency_key)


@app.put("/billing/auto-topup", tags=["Billing"], summary="Set auto top-up")
def set_auto_top_up(request: AutoTopUpSettings, caller: CurrentCaller) -> dict:
    account = account_for(caller, request.workspaceId, "billing")
    return billing.set_auto_top_up(account, request.enabled, request.thresholdCredits, request.topUpCredits)


@app.post("/billing/subscription", tags=["Billing"], summary="Subscribe or change plan")
def change_plan(request: PlanChange, caller: CurrentCaller, idempotency_key: IdempotencyKey = None) -> dict:
    return billing.change_subscription(account_for(caller, request.workspaceId, "billing"), request.tier, idempotency_key)


_api_handler = handler_for(app)


@logger.inject_lambda_context(clear_state=True)
def _top_up_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return billing.run_top_up(str(event["accountId"]), str(event["claim"]))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("source") == auto_top_up.TOP_UP_SOURCE:
        return _top_up_handler(event, context)
    return _api_handler(event, context)
