"""/billing: the account's billing overview and its credit ledger (API.md §5)."""

from __future__ import annotations

from conduit import credits
from conduit.access import account_for
from conduit.api import handler_for, make_resolver
from conduit.routes import Cursor, CurrentCaller, Limit, WorkspaceId, page_body

app = make_resolver()


@app.get("/billing", tags=["Billing"], summary="Billing overview of the account")
def overview(caller: CurrentCaller, workspace_id: WorkspaceId = None) -> dict:
    account = account_for(caller, workspace_id, "billing")
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
    limit: Limit = 20,
    cursor: Cursor = None,
) -> dict:
    return page_body(credits.ledger_page(account_for(caller, workspace_id, "billing").account_id, limit, cursor))


lambda_handler = handler_for(app)
