"""Which account a request acts on (API.md §4): the caller's own, unless it names a workspace."""

from __future__ import annotations

from conduit.auth import Caller
from conduit.errors import ConduitError
from conduit.repositories.accounts import Account


def account_for(caller: Caller, workspace_id: str | None) -> Account:
    if workspace_id is None:
        return caller.account
    # Workspaces (issue 9) add the membership and role check here. Until they
    # land no workspace exists, so every workspaceId is one the caller cannot see.
    raise ConduitError("WORKSPACE_NOT_FOUND")
