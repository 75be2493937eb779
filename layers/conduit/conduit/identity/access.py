"""Which account a request acts on, and whether the caller may (API.md §4, §10).

Requests act on the caller's personal account unless they name a workspace.
For a workspace the caller must be a member (else WORKSPACE_NOT_FOUND: its
existence does not leak) whose role allows the action (else PERMISSION_DENIED).
The role matrix is `PERMISSIONS`, the one table every function consults.
"""

from __future__ import annotations

from typing import Literal, get_args

from conduit.identity.gate import Caller
from conduit.platform.errors import ConduitError
from conduit.identity.rate_limit import count_account_request
from conduit.repositories.accounts import Account
from conduit.repositories.workspaces import WorkspacesRepository

Role = Literal["owner", "admin", "member", "viewer"]
Action = Literal["read", "write", "manage_members", "billing", "delete_workspace"]
ROLES: tuple[Role, ...] = get_args(Role)

# API.md §10: everyone reads; owner, admin and member create, change and use sites, agents and
# sessions; owner and admin manage members; billing and deleting the workspace are the owner's.
PERMISSIONS: dict[Action, frozenset[Role]] = {
    "read": frozenset({"owner", "admin", "member", "viewer"}),
    "write": frozenset({"owner", "admin", "member"}),
    "manage_members": frozenset({"owner", "admin"}),
    "billing": frozenset({"owner"}),
    "delete_workspace": frozenset({"owner"}),
}


def allows(role: str, action: Action) -> bool:
    return role in PERMISSIONS[action]


def workspace_role(caller: Caller, workspace_id: str) -> tuple[Account, str]:
    """The workspace and the caller's role in it; WORKSPACE_NOT_FOUND unless the caller is a member."""
    if caller.key is not None and caller.key.account_id != workspace_id:
        raise ConduitError("PERMISSION_DENIED", "This API key acts only on the account it was made for")
    account, role = WorkspacesRepository().membership(workspace_id, caller.user_id)
    if account is None or account.kind != "workspace" or role is None:
        raise ConduitError("WORKSPACE_NOT_FOUND")
    return account, role


def account_for(caller: Caller, workspace_id: str | None, action: Action) -> Account:
    """The account the request acts on, once the caller is allowed `action` on it.

    An API key names its account (API.md §13): a workspace key acts on its
    workspace whether or not the request names it, with the maker's role as it
    is now; a key never reaches another account than its own."""
    if caller.key is not None and workspace_id is None and caller.key.account_id != caller.user_id:
        workspace_id = caller.key.account_id
    if workspace_id is None:
        return caller.account  # everything is allowed on one's own account
    account, role = workspace_role(caller, workspace_id)
    if not allows(role, action):
        raise ConduitError("PERMISSION_DENIED", f"A workspace {role} cannot do this")
    # A workspace has a rate limit of its own, from its own tier.
    count_account_request(account)
    return account
