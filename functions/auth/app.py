"""/auth: register, login, refresh, logout, logout-all, me, accept-terms (API.md §2);
/api-keys: create, list, revoke API keys (API.md §13)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel, Field
from typing import Annotated

from conduit import api_keys, identity
from conduit.access import account_for
from conduit.api import handler_for, make_resolver
from conduit.auth import public
from conduit.routes import Cursor, CurrentCaller, EmailAddress, Limit, StrictBody, page_body

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


def session_body(session: identity.Session) -> dict[str, Any]:
    return {
        "user": identity.user_view(session.user),
        "accessToken": session.access_token,
        "refreshToken": session.refresh_token,
        "expiresIn": session.expires_in,
    }


@app.post("/auth/register", tags=["Auth"], summary="Create an account", status_code=201)
@public(limit_by_ip=True)
def register(request: RegisterRequest) -> dict:
    return session_body(identity.register(request.email, request.password, request.name))


@app.post("/auth/login", tags=["Auth"], summary="Sign in")
@public(limit_by_ip=True)
def login(request: LoginRequest) -> dict:
    return session_body(identity.login(request.email, request.password))


@app.post("/auth/refresh", tags=["Auth"], summary="Exchange a refresh token for a new token pair")
@public(limit_by_ip=True)
def refresh(request: RefreshRequest) -> dict:
    return session_body(identity.refresh(request.refreshToken))


@app.post("/auth/logout", tags=["Auth"], summary="Revoke this login's tokens", status_code=204)
def logout(caller: CurrentCaller):
    identity.logout(caller.user_id, caller.session_id)
    return Response(status_code=204)


@app.post("/auth/logout-all", tags=["Auth"], summary="Revoke every login of the user", status_code=204)
def logout_all(caller: CurrentCaller):
    identity.logout_all(caller.user_id)
    return Response(status_code=204)


@app.get("/auth/me", tags=["Auth"], summary="The caller and their account")
def me(caller: CurrentCaller) -> dict:
    return {**identity.user_view(caller.user), "account": identity.account_view(caller.account)}


@app.post("/auth/accept-terms", tags=["Auth"], summary="Accept the current terms of service")
def accept_terms(caller: CurrentCaller, request: AcceptTermsRequest | None = None) -> dict:
    user = identity.accept_terms(caller.user_id, request.version if request else None)
    return identity.user_view(user)


class CreateApiKeyRequest(StrictBody):
    name: str = Field(min_length=1, max_length=100)
    workspaceId: str | None = Field(None, min_length=1, max_length=64)
    expiresInDays: int | None = Field(None, ge=1, le=365, strict=True)


class ApiKeyView(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it; never enough to use it")
    accountId: str
    createdAt: str
    expiresAt: str | None


class NewApiKey(ApiKeyView):
    key: str = Field(description="`cdk_…`: shown only in this answer; send it as `Authorization: Bearer cdk_…`")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyView]
    nextCursor: str | None


def _returns(model: type[BaseModel], status: int = 200, description: str = "Successful Response") -> dict:
    return {"responses": {status: {"description": description, "content": {"application/json": {"model": model}}}}}


@app.post(
    "/api-keys",
    tags=["API keys"],
    summary="Create an API key (the key is shown only here)",
    status_code=201,
    **_returns(NewApiKey, 201, "The new key"),
)
def create_api_key(caller: CurrentCaller, request: CreateApiKeyRequest) -> dict:
    # Any member may make a key for a workspace; the key can do only what its maker's role allows when used.
    account = account_for(caller, request.workspaceId, "read")
    return api_keys.create_key(caller.user_id, account.account_id, account.tier, request.name, request.expiresInDays)


@app.get("/api-keys", tags=["API keys"], summary="The caller's API keys (never the keys themselves)", **_returns(ApiKeyPage))
def list_api_keys(caller: CurrentCaller, limit: Limit = 20, cursor: Cursor = None) -> dict:
    return page_body(api_keys.list_keys(caller.user_id, limit, cursor))


@app.delete("/api-keys/<keyId>", tags=["API keys"], summary="Revoke an API key: it stops working on the next request", status_code=204)
def delete_api_key(caller: CurrentCaller, keyId: Annotated[str, Path(max_length=64)]):  # noqa: N803
    api_keys.revoke_key(caller.user_id, keyId)
    return Response(status_code=204)


lambda_handler = handler_for(app)
