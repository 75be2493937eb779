"""/workspaces: Team accounts, their members and roles (API.md §10)."""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import Field

from conduit import workspaces
from conduit.api import handler_for, make_resolver
from conduit.auth import prefetch
from conduit.repositories.workspaces import prefetch_membership
from conduit.routes import CurrentCaller, EmailAddress, StrictBody

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


@app.post("/workspaces", tags=["Workspaces"], summary="Create a workspace (Team plan); the caller becomes its owner", status_code=201)
def create_workspace(request: NewWorkspace, caller: CurrentCaller) -> dict:
    return workspaces.create(caller, request.name)


@app.get("/workspaces", tags=["Workspaces"], summary="The caller's workspaces")
def list_workspaces(caller: CurrentCaller) -> dict:
    return {"items": workspaces.list_for(caller), "nextCursor": None}


@app.get("/workspaces/<workspaceId>", tags=["Workspaces"], summary="A workspace (members only)")
@prefetch(prefetch_membership)
def get_workspace(workspaceId: str, caller: CurrentCaller) -> dict:  # noqa: N803
    return workspaces.get(caller, workspaceId)


@app.delete("/workspaces/<workspaceId>", tags=["Workspaces"], summary="Delete a workspace (owner only)", status_code=204)
@prefetch(prefetch_membership)
def delete_workspace(workspaceId: str, caller: CurrentCaller):  # noqa: N803
    workspaces.delete(caller, workspaceId)
    return Response(status_code=204)


@app.post(
    "/workspaces/<workspaceId>/members",
    tags=["Workspaces"],
    summary="Add a registered user (idempotent: an existing member gets the role, 200)",
    status_code=201,
    responses={201: {"description": "Added"}, 200: {"description": "Already a member: the role was set"}},
)
@prefetch(prefetch_membership)
def add_member(workspaceId: str, request: NewMember, caller: CurrentCaller):  # noqa: N803
    member, created = workspaces.add_member(caller, workspaceId, request.email, request.role)
    return Response(status_code=201 if created else 200, content_type="application/json", body=member)


@app.get("/workspaces/<workspaceId>/members", tags=["Workspaces"], summary="Members and their roles")
@prefetch(prefetch_membership)
def list_members(workspaceId: str, caller: CurrentCaller) -> dict:  # noqa: N803
    return {"items": workspaces.list_members(caller, workspaceId), "nextCursor": None}


@app.patch("/workspaces/<workspaceId>/members/<userId>", tags=["Workspaces"], summary="Change a member's role")
@prefetch(prefetch_membership)
def change_role(workspaceId: str, userId: str, request: RoleChange, caller: CurrentCaller) -> dict:  # noqa: N803
    return workspaces.change_role(caller, workspaceId, userId, request.role)


@app.delete("/workspaces/<workspaceId>/members/<userId>", tags=["Workspaces"], summary="Remove a member", status_code=204)
@prefetch(prefetch_membership)
def remove_member(workspaceId: str, userId: str, caller: CurrentCaller):  # noqa: N803
    workspaces.remove_member(caller, workspaceId, userId)
    return Response(status_code=204)


lambda_handler = handler_for(app)
