"""/auth: register, login, refresh, logout, logout-all, me, accept-terms (API.md §2)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from pydantic import EmailStr, Field

from conduit import identity
from conduit.api import handler_for, make_resolver
from conduit.auth import public
from conduit.routes import CurrentCaller, StrictBody

app = make_resolver()


class RegisterRequest(StrictBody):
    email: EmailStr = Field(max_length=254)
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


lambda_handler = handler_for(app)
