"""/billing: the account's billing overview and its credit ledger (API.md §5)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.openapi.params import Query

from conduit import credits
from conduit.access import account_for
from conduit.api import handler_for, make_resolver
from conduit.auth import Caller, current_caller

app = make_resolver()
CurrentCaller = Annotated[Caller, Depends(current_caller)]
WorkspaceId = Annotated[str | None, Query(alias="workspaceId", min_length=1, max_length=64)]


@app.get("/billing", tags=["Billing"], summary="Billing overview of the account")
def overview(caller: CurrentCaller, workspace_id: WorkspaceId = None) -> dict:
    account = account_for(caller, workspace_id)
    return {
        "accountId": account.account_id,
        "tier": account.tier,
        "credits": account.credits,
        "subscriptionStatus": account.subscription_status,
        # Payment methods and auto top-up arrive with Stripe billing (issue 8);
        # until then no account can have either.
        "hasPaymentMethod": False,
        "autoTopUp": {"enabled": False, "thresholdCredits": 0, "topUpCredits": 0},
    }


@app.get("/billing/ledger", tags=["Billing"], summary="Credit ledger, newest first")
def ledger(
    caller: CurrentCaller,
    workspace_id: WorkspaceId = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> dict:
    account = account_for(caller, workspace_id)
    page = credits.ledger_page(account.account_id, limit, cursor)
    return {"items": page.items, "nextCursor": page.next_cursor}


lambda_handler = handler_for(app)
