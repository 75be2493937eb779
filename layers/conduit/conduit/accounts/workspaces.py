"""Workspaces (API.md §10): Team accounts shared between members with roles."""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field

from conduit.identity.access import Role, account_for, workspace_role
from conduit.identity.gate import Caller
from conduit.platform.errors import ConduitError, validation_error
from conduit.identity.login import normalize_email
from conduit.platform.ids import iso, new_id, utc_now
from conduit.accounts.features import require_feature
from conduit.repositories.accounts import Account, AccountsRepository
from conduit.repositories.users import UsersRepository
from conduit.repositories.workspaces import WorkspacesRepository, member_item
from conduit.platform.tiers import get_tiers
from conduit.platform.views import View

ASSIGNABLE_ROLES = ("admin", "member", "viewer")  # nobody sets `owner`: there is one, the creator


class WorkspaceView(View):
    """A Team workspace, as one of its members sees it (API.md §10)."""

    id: str
    name: str
    ownerId: str
    role: Role = Field(description="The caller's role in it")
    tier: str
    credits: int = Field(description="The workspace's own balance")
    createdAt: str

    @classmethod
    def of(cls, account: Account, role: str) -> Self:
        return cls(
            id=account.account_id,
            name=account.name,
            ownerId=account.owner_id,
            role=role,
            tier=account.tier,
            credits=account.credits,
            createdAt=account.created_at,
        )


class MemberView(View):
    userId: str
    email: str
    role: Role

    @classmethod
    def of(cls, member: dict[str, Any]) -> Self:
        return cls(userId=member["userId"], email=member["email"], role=member["role"])


def _check_role(role: str) -> None:
    if role not in ASSIGNABLE_ROLES:
        raise validation_error("role", f"must be one of {', '.join(ASSIGNABLE_ROLES)} (there is one owner: the creator)")


def create(caller: Caller, name: str) -> dict[str, Any]:
    if caller.key is not None:  # a key acts on the one account it names (API.md §13)
        raise ConduitError("PERMISSION_DENIED", "An API key cannot create workspaces")
    require_feature(get_tiers().tier(caller.account.tier), "workspaces")  # WORKSPACE_REQUIRED
    workspace_id, now = new_id("ws"), utc_now()
    account_items = AccountsRepository().new_account_items(
        workspace_id, kind="workspace", owner_id=caller.user_id, tier="team", signup_credits=0, now=now, name=name
    )
    owner = member_item(workspace_id, caller.user_id, caller.user.email, "owner", iso(now))
    WorkspacesRepository().create(account_items, owner, get_tiers().tier("team").max_workspace_members)
    account, role = workspace_role(caller, workspace_id)
    return WorkspaceView.of(account, role).body()


def list_for(caller: Caller) -> list[dict[str, Any]]:
    workspaces = []
    for membership in WorkspacesRepository().memberships(caller.user_id):
        try:
            account, role = workspace_role(caller, membership["workspaceId"])
        except ConduitError:
            continue  # deleted while we listed
        workspaces.append(WorkspaceView.of(account, role).body())
    return workspaces


def get(caller: Caller, workspace_id: str) -> dict[str, Any]:
    account, role = workspace_role(caller, workspace_id)
    return WorkspaceView.of(account, role).body()


def delete(caller: Caller, workspace_id: str) -> None:
    account_for(caller, workspace_id, "delete_workspace")
    WorkspacesRepository().delete(workspace_id)


def add_member(caller: Caller, workspace_id: str, email: str, role: str) -> tuple[dict[str, Any], bool]:
    """Add a registered user (idempotent: an existing member gets the role asked for). Returns
    (member, created)."""
    _check_role(role)
    workspace = account_for(caller, workspace_id, "manage_members")
    user = UsersRepository().find_by_email(normalize_email(email))
    if user is None:
        raise ConduitError("NOT_FOUND", "No registered user has this email")
    workspaces = WorkspacesRepository()
    member = member_item(workspace_id, user.id, user.email, role, iso(utc_now()))
    if workspaces.add_member(member, get_tiers().tier(workspace.tier).max_workspace_members):
        return MemberView.of(member).body(), True
    return MemberView.of(workspaces.set_role(workspace_id, user.id, role)).body(), False


def list_members(caller: Caller, workspace_id: str) -> list[dict[str, Any]]:
    account_for(caller, workspace_id, "read")
    return [MemberView.of(member).body() for member in WorkspacesRepository().members(workspace_id)]


def change_role(caller: Caller, workspace_id: str, user_id: str, role: str) -> dict[str, Any]:
    _check_role(role)
    account_for(caller, workspace_id, "manage_members")
    return MemberView.of(WorkspacesRepository().set_role(workspace_id, user_id, role)).body()


def remove_member(caller: Caller, workspace_id: str, user_id: str) -> None:
    account_for(caller, workspace_id, "manage_members")
    WorkspacesRepository().remove_member(workspace_id, user_id)
