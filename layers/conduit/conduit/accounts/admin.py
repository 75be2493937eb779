"""Admin operations (API.md §3): users, token revocation, account tier and credits."""

from __future__ import annotations

from typing import Any, Self

from conduit.billing import credits
from conduit.platform.errors import ConduitError
from conduit.identity.login import AccountSummary, UserView
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.base import Page
from conduit.repositories.users import User, UsersRepository


class AdminUserView(UserView):
    """A user as admins see them."""

    disabled: bool

    @classmethod
    def of(cls, user: User, **more: Any) -> Self:
        return super().of(user, disabled=user.disabled, **more)


def list_users(limit: int, cursor: str | None) -> Page:
    page = UsersRepository().list_users(limit, cursor)
    return Page(items=[AdminUserView.of(user).body() for user in page.items], next_cursor=page.next_cursor)


def update_user(user_id: str, *, is_admin: bool | None, disabled: bool | None) -> dict[str, Any]:
    values = {name: value for name, value in (("isAdmin", is_admin), ("disabled", disabled)) if value is not None}
    # Disabling also bumps the token version, so refresh tokens die with the access tokens.
    user = UsersRepository().update_user(user_id, increment_token_version=bool(disabled), **values)
    return AdminUserView.of(user).body()


def revoke_tokens(user_id: str) -> None:
    UsersRepository().update_user(user_id, increment_token_version=True)


def update_account(account_id: str, *, tier: str | None, subscription_status: str | None) -> dict[str, Any]:
    accounts = AccountsRepository()
    if tier is not None:  # first: an unknown tier is refused before anything is written
        accounts.set_tier(account_id, tier)
    if subscription_status is not None:
        accounts.set_subscription_status(account_id, subscription_status)
    account = accounts.get(account_id)
    if account is None:
        raise ConduitError("NOT_FOUND", "No account with this id")
    return AccountSummary.of(account).body()


def adjust_credits(account_id: str, delta: int, reason: str, key: str) -> int:
    if AccountsRepository().get(account_id) is None:
        raise ConduitError("NOT_FOUND", "No account with this id")
    return credits.adjust(account_id, delta, reason, key)
