"""/workspaces: Team accounts, their members and roles (API.md §10)."""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import Field

from conduit.accounts import workspaces
from conduit.http.api import handler_for, make_resolver
from conduit.identity.gate import prefetch
from conduit.repositories.workspaces import prefetch_membership
from conduit.http.routes import CurrentCaller, EmailAddress, Page, StrictBody, answers
from conduit.accounts.workspaces import MemberView, WorkspaceView

app = make_resolver()
# Validated against the role matrix in the domain, so an unknown role and `owner` both get a clear message.
RoleName = Literal["owner", "admin", "member", "viewer"]


class NewWorkspace(StrictBody):
    name: str = Field(min_length=1, max_length=100)


class NewMember(StrictBody):
    email: EmailAddress = Field(max_length=254)
    role: RoleName


class RoleChange(StrictBody):
    role: RoleName


class WorkspacePage(Page[WorkspaceView]):
    """Every workspace of the caller, on one page (nextCursor is null)."""


class MemberPage(Page[MemberView]):
    """Every member, on one page (nextCursor is null)."""


WORKSPACE_NOT_FOUND = ("WORKSPACE_NOT_FOUND", "No workspace with this id of which the caller is a member")
MEMBER_NOT_FOUND = ("MEMBER_NOT_FOUND", "The user is not a member of this workspace")
MANAGERS_ONLY = (
    "PERMISSION_DENIED",
    "Only the owner and admins manage members (or an API key made for another account)",
)


@app.post(
    "/workspaces",
    tags=["Workspaces"],
    summary="Create a workspace (Team plan); the caller becomes its owner",
    description="A workspace is an account of its own: its own credits, limits, rate limit, sites, agents and sessions.",
    **answers(
        ("WORKSPACE_REQUIRED", "The caller's own account is not on the Team plan"),
        ("PERMISSION_DENIED", "An API key cannot create workspaces"),
        status=201,
        description="The new workspace",
    ),
)
def create_workspace(request: NewWorkspace, caller: CurrentCaller) -> WorkspaceView:
    return workspaces.create(caller, request.name)


@app.get(
    "/workspaces",
    tags=["Workspaces"],
    summary="The caller's workspaces",
    **answers(description="Every workspace of the caller"),
)
def list_workspaces(caller: CurrentCaller) -> WorkspacePage:
    return {"items": workspaces.list_for(caller), "nextCursor": None}


@app.get(
    "/workspaces/<workspaceId>",
    tags=["Workspaces"],
    summary="A workspace (members only)",
    **answers(
        WORKSPACE_NOT_FOUND, ("PERMISSION_DENIED", "An API key made for another account"), description="The workspace"
    ),
)
@prefetch(prefetch_membership)
def get_workspace(workspaceId: str, caller: CurrentCaller) -> WorkspaceView:  # noqa: N803
    return workspaces.get(caller, workspaceId)


@app.delete(
    "/workspaces/<workspaceId>",
    tags=["Workspaces"],
    summary="Delete a workspace (owner only)",
    **answers(
        WORKSPACE_NOT_FOUND,
        ("PERMISSION_DENIED", "Only the owner deletes a workspace (or an API key made for another account)"),
        status=204,
        description="Deleted",
    ),
)
@prefetch(prefetch_membership)
def delete_workspace(workspaceId: str, caller: CurrentCaller):  # noqa: N803
    workspaces.delete(caller, workspaceId)
    return Response(status_code=204)


@app.post(
    "/workspaces/<workspaceId>/members",
    tags=["Workspaces"],
    summary="Add a registered user (idempotent: an existing member gets the role, 200)",
    **answers(
        ("VALIDATION_ERROR", "The role is owner (there is one: the creator)"),
        ("NOT_FOUND", "No registered user has this email"),
        ("FEATURE_LIMIT_REACHED", "The workspace has as many members as its tier allows (maxWorkspaceMembers)"),
        ("ROLE_CHANGE_FORBIDDEN", "The user is the workspace's owner, whose role cannot change"),
        WORKSPACE_NOT_FOUND,
        MANAGERS_ONLY,
        status=201,
        description="Added",
        also={200: "Already a member: the role was set"},
    ),
)
@prefetch(prefetch_membership)
def add_member(workspaceId: str, request: NewMember, caller: CurrentCaller) -> Response[MemberView]:  # noqa: N803
    member, created = workspaces.add_member(caller, workspaceId, request.email, request.role)
    return Response(status_code=201 if created else 200, content_type="application/json", body=member)


@app.get(
    "/workspaces/<workspaceId>/members",
    tags=["Workspaces"],
    summary="Members and their roles",
    **answers(
        WORKSPACE_NOT_FOUND, ("PERMISSION_DENIED", "An API key made for another account"), description="Every member"
    ),
)
@prefetch(prefetch_membership)
def list_members(workspaceId: str, caller: CurrentCaller) -> MemberPage:  # noqa: N803
    return {"items": workspaces.list_members(caller, workspaceId), "nextCursor": None}


@app.patch(
    "/workspaces/<workspaceId>/members/<userId>",
    tags=["Workspaces"],
    summary="Change a member's role",
    **answers(
        ("VALIDATION_ERROR", "The role is owner (there is one: the creator)"),
        MEMBER_NOT_FOUND,
        ("ROLE_CHANGE_FORBIDDEN", "The owner's role cannot change"),
        WORKSPACE_NOT_FOUND,
        MANAGERS_ONLY,
        description="The member",
    ),
)
@prefetch(prefetch_membership)
def change_role(workspaceId: str, userId: str, request: RoleChange, caller: CurrentCaller) -> MemberView:  # noqa: N803
    return workspaces.change_role(caller, workspaceId, userId, request.role)


@app.delete(
    "/workspaces/<workspaceId>/members/<userId>",
    tags=["Workspaces"],
    summary="Remove a member",
    **answers(
        MEMBER_NOT_FOUND,
        ("ROLE_CHANGE_FORBIDDEN", "The owner cannot be removed"),
        WORKSPACE_NOT_FOUND,
        MANAGERS_ONLY,
        status=204,
        description="Removed",
    ),
)
@prefetch(prefetch_membership)
def remove_member(workspaceId: str, userId: str, caller: CurrentCaller):  # noqa: N803
    workspaces.remove_member(caller, workspaceId, userId)
    return Response(status_code=204)


lambda_handler = handler_for(app)
