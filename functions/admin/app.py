"""/admin: users, token revocation, account tier and credits (API.md §3). Admins only (the gate checks)."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Header
from pydantic import Field, StrictBool, StrictInt

from conduit.accounts import admin
from conduit.accounts.admin import AdminUserView
from conduit.http.api import handler_for, make_resolver
from conduit.identity.login import AccountSummary
from conduit.platform.ids import new_id
from conduit.http.routes import Cursor, CurrentCaller, Limit, Page, StrictBody, answers, page_body
from conduit.platform.views import View

app = make_resolver()


class UserChange(StrictBody):
    isAdmin: StrictBool | None = None
    disabled: StrictBool | None = None


class AccountChange(StrictBody):
    tier: str | None = Field(None, min_length=1, max_length=32)
    subscriptionStatus: Literal["active", "past_due", "canceled", "none"] | None = None


class CreditChange(StrictBody):
    credits: StrictInt = Field(ge=-10_000_000, le=10_000_000)
    reason: str = Field(min_length=1, max_length=200)


class AdminUserPage(Page[AdminUserView]):
    pass


class CreditBalance(View):
    credits: int = Field(description="The account's balance after the change")


NO_USER = ("NOT_FOUND", "No user with this id")
NO_ACCOUNT = ("NOT_FOUND", "No account with this id")


@app.get("/admin/users", tags=["Admin"], summary="List users", **answers(description="A page of users"))
def list_users(
    caller: CurrentCaller,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> AdminUserPage:
    return page_body(admin.list_users(limit, cursor))


@app.patch(
    "/admin/users/<userId>",
    tags=["Admin"],
    summary="Promote or disable a user",
    description="A disabled user's tokens stop working at once (TOKEN_REVOKED) and their login fails (UNAUTHORIZED).",
    **answers(NO_USER, description="The user"),
)
def update_user(userId: str, change: UserChange, caller: CurrentCaller) -> AdminUserView:  # noqa: N803 - path name
    return admin.update_user(userId, is_admin=change.isAdmin, disabled=change.disabled)


@app.post(
    "/admin/users/<userId>/revoke-tokens",
    tags=["Admin"],
    summary="Revoke every token of a user",
    description="Every login of the user stops working at once (TOKEN_REVOKED); they can sign in again.",
    **answers(NO_USER, status=204, description="Revoked"),
)
def revoke_tokens(userId: str, caller: CurrentCaller):  # noqa: N803
    admin.revoke_tokens(userId)
    return Response(status_code=204)


@app.patch(
    "/admin/accounts/<accountId>",
    tags=["Admin"],
    summary="Set an account's tier or subscription status",
    **answers(NO_ACCOUNT, ("VALIDATION_ERROR", "An unknown tier"), description="The account"),
)
def update_account(accountId: str, change: AccountChange, caller: CurrentCaller) -> AccountSummary:  # noqa: N803
    return admin.update_account(accountId, tier=change.tier, subscription_status=change.subscriptionStatus)


@app.post(
    "/admin/accounts/<accountId>/credits",
    tags=["Admin"],
    summary="Grant (or remove) credits",
    description="A grant adds purchased (non-lapsing) credits; a removal takes monthly credits first. "
    "With an Idempotency-Key a retry applies once; the same key with a different body → 409 IDEMPOTENCY_KEY_REUSED.",
    **answers(
        NO_ACCOUNT,
        ("NO_CREDITS", "A removal larger than the balance (it never goes negative)"),
        "IDEMPOTENCY_KEY_REUSED",
        description="The new balance",
    ),
)
def adjust_credits(
    accountId: str,  # noqa: N803
    change: CreditChange,
    caller: CurrentCaller,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
) -> CreditBalance:
    # Without an Idempotency-Key every call is a new grant; with one, retries apply once.
    key = f"admin:{accountId}:{idempotency_key}" if idempotency_key else new_id("adjust")
    return CreditBalance(credits=admin.adjust_credits(accountId, change.credits, change.reason, key))


lambda_handler = handler_for(app)
