"""/auth: register, login, refresh, logout, logout-all, me, accept-terms (API.md §2);
/api-keys: create, list, revoke API keys (API.md §13)."""

from __future__ import annotations

from typing import Annotated, Self

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import Field

from conduit.identity import api_keys
from conduit.identity import login as identity
from conduit.identity.access import account_for
from conduit.http.api import handler_for, make_resolver
from conduit.identity.api_keys import ApiKeyView, NewApiKey
from conduit.identity.gate import public
from conduit.identity.login import AccountSummary, UserView
from conduit.http.routes import ACCOUNT_ACCESS, Cursor, CurrentCaller, EmailAddress, Limit, Page, StrictBody, answers, page_body
from conduit.platform.views import View

app = make_resolver()


class RegisterRequest(StrictBody):
    email: EmailAddress = Field(max_length=254)
    password: str = Field(min_length=8, max_length=256)
    name: str | None = Field(None, min_length=1, max_length=100)


class LoginRequest(StrictBody):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(StrictBody):
    refreshToken: str = Field(min_length=1, max_length=512)


class AcceptTermsRequest(StrictBody):
    version: str | None = Field(None, min_length=1, max_length=64)


class SignedIn(View):
    """A new token pair, with its user."""

    user: UserView
    accessToken: str = Field(description="A JWT: send it as `Authorization: Bearer <accessToken>`")
    refreshToken: str = Field(description="Opaque; POST /auth/refresh spends it for a new pair (it lasts 30 days)")
    expiresIn: int = Field(description="Seconds the access token lasts (ACCESS_TOKEN_TTL_SECONDS, 900 by default)")

    @classmethod
    def of(cls, pair: identity.TokenPair) -> Self:
        return cls(
            user=UserView.of(pair.user),
            accessToken=pair.access_token,
            refreshToken=pair.refresh_token,
            expiresIn=pair.expires_in,
        )


class Me(UserView):
    account: AccountSummary = Field(description="The caller's personal account")


@app.post(
    "/auth/register",
    tags=["Auth"],
    summary="Create an account",
    description="Registers a user with a personal account (with the tiers file's signup credits) and signs them in. "
    "Every route outside /auth then needs the current terms accepted (POST /auth/accept-terms).",
    **answers("EMAIL_IN_USE", status=201, description="Registered and signed in"),
)
@public(limit_by_ip=True)
def register(request: RegisterRequest) -> SignedIn:
    return SignedIn.of(identity.register(request.email, request.password, request.name))


@app.post(
    "/auth/login",
    tags=["Auth"],
    summary="Sign in",
    **answers(
        ("UNAUTHORIZED", "Wrong email or password, or a disabled user (one answer for all)"), description="Signed in"
    ),
)
@public(limit_by_ip=True)
def login(request: LoginRequest) -> SignedIn:
    return SignedIn.of(identity.login(request.email, request.password))


@app.post(
    "/auth/refresh",
    tags=["Auth"],
    summary="Exchange a refresh token for a new token pair",
    description="The refresh token sent is spent. Sending a spent one again revokes that whole login (it has leaked).",
    **answers(
        ("INVALID_TOKEN", "Unknown or expired refresh token"),
        ("TOKEN_REVOKED", "A spent refresh token (the login is now revoked), a revoked login, or a disabled user"),
        description="The new pair",
    ),
)
@public(limit_by_ip=True)
def refresh(request: RefreshRequest) -> SignedIn:
    return SignedIn.of(identity.refresh(request.refreshToken))


@app.post(
    "/auth/logout", tags=["Auth"], summary="Revoke this login's tokens", **answers(status=204, description="Signed out")
)
def logout(caller: CurrentCaller):
    identity.logout(caller.user_id, caller.login_id)
    return Response(status_code=204)


@app.post(
    "/auth/logout-all",
    tags=["Auth"],
    summary="Revoke every login of the user",
    description="Every device's tokens stop working at once (TOKEN_REVOKED).",
    **answers(status=204, description="Every login signed out"),
)
def logout_all(caller: CurrentCaller):
    identity.logout_all(caller.user_id)
    return Response(status_code=204)


@app.get("/auth/me", tags=["Auth"], summary="The caller and their account", **answers(description="The caller"))
def me(caller: CurrentCaller) -> Me:
    return Me.of(caller.user, account=AccountSummary.of(caller.account))


@app.post(
    "/auth/accept-terms",
    tags=["Auth"],
    summary="Accept the current terms of service",
    **answers(
        ("VALIDATION_ERROR", "`version`, when sent, is not the current terms version"),
        description="The user, termsAccepted true",
    ),
)
def accept_terms(caller: CurrentCaller, request: AcceptTermsRequest | None = None) -> UserView:
    return UserView.of(identity.accept_terms(caller.user_id, request.version if request else None))


class CreateApiKeyRequest(StrictBody):
    name: str = Field(min_length=1, max_length=100)
    workspaceId: str | None = Field(None, min_length=1, max_length=64)
    expiresInDays: int | None = Field(None, ge=1, le=365, strict=True)


class ApiKeyPage(Page[ApiKeyView]):
    pass


@app.post(
    "/api-keys",
    tags=["API keys"],
    summary="Create an API key (the key is shown only here)",
    description="The key acts as its maker on the account it names (a workspace key: with the maker's role at the time of use). "
    "An API key cannot create, list or revoke keys.",
    **answers(
        ("FEATURE_LIMIT_REACHED", "The account has as many keys as its tier allows (maxApiKeys)"),
        *ACCOUNT_ACCESS,
        status=201,
        description="The new key",
    ),
)
def create_api_key(caller: CurrentCaller, request: CreateApiKeyRequest) -> NewApiKey:
    # Any member may make a key for a workspace; the key can do only what its maker's role allows when used.
    account = account_for(caller, request.workspaceId, "read")
    return api_keys.create_key(caller.user_id, account.account_id, account.tier, request.name, request.expiresInDays)


@app.get(
    "/api-keys",
    tags=["API keys"],
    summary="The caller's API keys (never the keys themselves)",
    **answers(description="A page of keys"),
)
def list_api_keys(caller: CurrentCaller, limit: Limit = 20, cursor: Cursor = None) -> ApiKeyPage:
    return page_body(api_keys.list_keys(caller.user_id, limit, cursor))


@app.delete(
    "/api-keys/<keyId>",
    tags=["API keys"],
    summary="Revoke an API key: it stops working on the next request",
    **answers(("NOT_FOUND", "The caller has no API key with this id"), status=204, description="Revoked"),
)
def delete_api_key(caller: CurrentCaller, keyId: Annotated[str, Path(max_length=64)]):  # noqa: N803
    api_keys.revoke_key(caller.user_id, keyId)
    return Response(status_code=204)


lambda_handler = handler_for(app)
