"""Registration, login, token refresh and revocation, terms (API.md §2)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Self

from pydantic import Field

from conduit.platform.errors import ConduitError, validation_error
from conduit.platform.ids import iso, new_id, utc_now
from conduit.identity.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from conduit.repositories.accounts import Account, AccountsRepository, SubscriptionStatus
from conduit.repositories.users import User, UsersRepository
from conduit.platform.settings import get_settings
from conduit.platform.tiers import get_tiers
from conduit.identity.tokens import issue_access_token, new_refresh_token, refresh_token_digest
from conduit.platform.views import View

LOGIN_FAILED = "Invalid email or password"  # one message for unknown email and wrong password


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What register, login and refresh answer: a new access and refresh token, with the user."""

    user: User
    access_token: str
    refresh_token: str
    expires_in: int


def normalize_email(email: str) -> str:
    return email.strip().lower()


class UserView(View):
    """A user as the API shows them (never the password hash)."""

    id: str
    email: str
    name: str | None
    isAdmin: bool
    termsAccepted: bool = Field(description="Whether the user accepted the current terms version (TERMS_VERSION)")
    termsVersion: str | None = Field(description="The terms version the user last accepted; null before the first")
    createdAt: str

    @classmethod
    def of(cls, user: User, **more: Any) -> Self:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            isAdmin=user.is_admin,
            termsAccepted=user.terms_version == get_settings().terms_version,
            termsVersion=user.terms_version,
            createdAt=user.created_at,
            **more,
        )


class AccountSummary(View):
    """An account (personal, or a workspace) in brief."""

    id: str = Field(description="A personal account's id is its user's id")
    tier: str = Field(
        description="The tier in force: free, pro, harness or team (a subscription past due too long is free)"
    )
    credits: int = Field(description="The balance: monthly plus purchased credits")
    subscriptionStatus: SubscriptionStatus

    @classmethod
    def of(cls, account: Account) -> Self:
        return cls(
            id=account.account_id,
            tier=account.tier,
            credits=account.credits,
            subscriptionStatus=account.subscription_status,
        )


def _sign_in(user: User, login_id: str | None = None) -> TokenPair:
    """Start a login (or continue one on refresh) with a fresh token pair."""
    now = utc_now()
    refresh_token = new_refresh_token()
    expires = int((now + timedelta(seconds=get_settings().refresh_token_ttl_seconds)).timestamp())
    users = UsersRepository()
    if login_id is None:
        login_id = secrets.token_hex(12)
        users.start_login(user, login_id, refresh_token_digest(refresh_token), iso(now), expires)
    access_token, expires_in = issue_access_token(user.id, login_id, now)
    return TokenPair(user=user, access_token=access_token, refresh_token=refresh_token, expires_in=expires_in)


def register(email: str, password: str, name: str | None) -> TokenPair:
    email = normalize_email(email)
    moment = utc_now()
    now = iso(moment)
    user_id = new_id("usr")
    user_values = {
        "userId": user_id,
        "email": email,
        "name": name,
        "passwordHash": hash_password(password),
        "isAdmin": email in get_settings().admin_email_set,
        "disabled": False,
        "tokenVersion": 0,
        "createdAt": now,
    }
    account_items = AccountsRepository().new_account_items(
        user_id, kind="personal", owner_id=user_id, signup_credits=get_tiers().signup_credits, now=moment
    )
    users = UsersRepository()
    users.create(user_values, account_items)
    return _sign_in(User.from_item(user_values))


def check_password(email: str, password: str) -> User:
    """The user with this email and password (login, and the OAuth consent page), or UNAUTHORIZED."""
    user = UsersRepository().find_by_email(normalize_email(email))
    # Always run the KDF, so an unknown email takes as long as a wrong password.
    password_matches = verify_password(password, user.password_hash if user else dummy_hash())
    if user is None or not password_matches or user.disabled:
        raise ConduitError("UNAUTHORIZED", LOGIN_FAILED)
    if needs_rehash(user.password_hash):
        # Only while the hash is the one just verified: a password changed meanwhile stands.
        UsersRepository().replace_password_hash(user.id, user.password_hash, hash_password(password))
    return user


def login(email: str, password: str) -> TokenPair:
    return _sign_in(check_password(email, password))


def refresh(refresh_token: str) -> TokenPair:
    """Rotate: the presented token is spent and a new pair issued. Presenting a spent token
    again means it leaked (or the client is confused): the whole login is revoked."""
    users = UsersRepository()
    digest = refresh_token_digest(refresh_token)
    record = users.get_refresh(digest)
    if record is None or record["expiresAt"] < utc_now().timestamp():
        raise ConduitError("INVALID_TOKEN", "Unknown or expired refresh token")
    user_id, login_id = record["userId"], record["sid"]
    user = users.get_user(user_id)
    login_record = users.get_login(user_id, login_id)
    if record["spent"]:
        users.revoke_login(user_id, login_id)
        raise ConduitError("TOKEN_REVOKED", "Refresh token reuse detected; this login was revoked")
    if (
        user is None
        or user.disabled
        or login_record is None
        or login_record.revoked
        or login_record.token_version != user.token_version
    ):
        raise ConduitError("TOKEN_REVOKED")
    pair = _sign_in(user, login_id=login_id)
    expires = int((utc_now() + timedelta(seconds=get_settings().refresh_token_ttl_seconds)).timestamp())
    if not users.rotate_refresh(user_id, login_id, digest, refresh_token_digest(pair.refresh_token), expires):
        # Lost a race with another use of the same token: that is reuse too.
        users.revoke_login(user_id, login_id)
        raise ConduitError("TOKEN_REVOKED", "Refresh token reuse detected; this login was revoked")
    return pair


def logout(user_id: str, login_id: str) -> None:
    UsersRepository().revoke_login(user_id, login_id)


def logout_all(user_id: str) -> None:
    """Every login of the user, on every device, stops working on its next request."""
    UsersRepository().update_user(user_id, increment_token_version=True)


def accept_terms(user_id: str, version: str | None) -> User:
    current = get_settings().terms_version
    if version is not None and version != current:
        raise validation_error("version", f"must be the current terms version {current!r}")
    return UsersRepository().update_user(user_id, termsVersion=current, termsAcceptedAt=iso(utc_now()))
