"""Workspaces (API.md §10): the role matrix cell by cell, then behaviour through the local stack."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conduit.identity.access import PERMISSIONS, ROLES, allows

from .helpers import assert_error, bearer, register
from .sites import TestSite, rest_manifest

# API.md §10 restated: everyone reads; owner, admin and member create, change and use resources;
# owner and admin manage members; billing and deleting the workspace are the owner's.
EXPECTED = {
    ("owner", "read"): True, ("admin", "read"): True, ("member", "read"): True, ("viewer", "read"): True,
    ("owner", "write"): True, ("admin", "write"): True, ("member", "write"): True, ("viewer", "write"): False,
    ("owner", "manage_members"): True, ("admin", "manage_members"): True,
    ("member", "manage_members"): False, ("viewer", "manage_members"): False,
    ("owner", "billing"): True, ("admin", "billing"): False, ("member", "billing"): False, ("viewer", "billing"): False,
    ("owner", "delete_workspace"): True, ("admin", "delete_workspace"): False,
    ("member", "delete_workspace"): False, ("viewer", "delete_workspace"): False,
}


@pytest.mark.parametrize(("role", "action"), sorted(EXPECTED))
def test_role_matrix_cell(role, action):
    assert allows(role, action) is EXPECTED[(role, action)]


def test_the_matrix_covers_every_role_and_action():
    assert {(role, action) for role in ROLES for action in PERMISSIONS} == set(EXPECTED)


# --- through the local stack ----------------------------------------------------------------


def person(client, admin=None, tier=None):
    session = register(client)
    headers = bearer(session["accessToken"])
    client.post("/auth/accept-terms", json={}, headers=headers)
    if tier:
        client.patch(f"/admin/accounts/{session['user']['id']}", json={"tier": tier}, headers=admin)
    return {"headers": headers, "id": session["user"]["id"], "email": session["user"]["email"]}


@pytest.fixture
def team(client, admin):
    """A workspace with an owner, an admin, a member and a viewer, and an outsider."""
    owner = person(client, admin, tier="team")
    created = client.post("/workspaces", json={"name": "Acme"}, headers=owner["headers"])
    assert created.status_code == 201, created.text
    workspace = created.json()
    people = {"owner": owner, "outsider": person(client)}
    for role in ("admin", "member", "viewer"):
        people[role] = person(client)
        added = client.post(f"/workspaces/{workspace['id']}/members", json={"email": people[role]["email"], "role": role}, headers=owner["headers"])
        assert added.status_code == 201, added.text
    return workspace["id"], people


pytestmark = pytest.mark.stack


def test_creating_needs_the_team_plan(client):
    assert_error(client.post("/workspaces", json={"name": "x"}, headers=person(client)["headers"]), 403, "WORKSPACE_REQUIRED")


def test_a_workspace_and_its_members(client, team):
    workspace_id, people = team
    fetched = client.get(f"/workspaces/{workspace_id}", headers=people["viewer"]["headers"]).json()
    assert (fetched["id"], fetched["name"], fetched["role"], fetched["tier"], fetched["ownerId"]) == (
        workspace_id, "Acme", "viewer", "team", people["owner"]["id"]
    )
    members = client.get(f"/workspaces/{workspace_id}/members", headers=people["member"]["headers"]).json()["items"]
    assert sorted(m["role"] for m in members) == ["admin", "member", "owner", "viewer"]
    assert [w["id"] for w in client.get("/workspaces", headers=people["admin"]["headers"]).json()["items"]] == [workspace_id]


def test_a_non_member_sees_nothing_of_the_workspace(client, team):
    workspace_id, people = team
    outsider = people["outsider"]["headers"]
    assert_error(client.get(f"/workspaces/{workspace_id}", headers=outsider), 404, "WORKSPACE_NOT_FOUND")
    assert_error(client.get(f"/workspaces/{workspace_id}/members", headers=outsider), 404, "WORKSPACE_NOT_FOUND")
    assert_error(client.get("/vault/sites", params={"workspaceId": workspace_id}, headers=outsider), 404, "WORKSPACE_NOT_FOUND")
    assert_error(client.get("/billing", params={"workspaceId": workspace_id}, headers=outsider), 404, "WORKSPACE_NOT_FOUND")
    assert_error(client.post("/sessions", json={"workspaceId": workspace_id}, headers=outsider), 404, "WORKSPACE_NOT_FOUND")
    assert client.get("/workspaces", headers=outsider).json()["items"] == []
    assert_error(client.get("/workspaces/ws_doesnotexist", headers=outsider), 404, "WORKSPACE_NOT_FOUND")


def test_a_viewer_cannot_create_and_a_member_can(client, team):
    workspace_id, people = team
    site = TestSite(manifest=rest_manifest)
    try:
        denied = client.post("/vault/sites", json={"url": site.origin, "workspaceId": workspace_id}, headers=people["viewer"]["headers"])
        assert_error(denied, 403, "PERMISSION_DENIED")
        assert_error(client.post("/sessions", json={"workspaceId": workspace_id}, headers=people["viewer"]["headers"]), 403, "PERMISSION_DENIED")
        created = client.post("/vault/sites", json={"url": site.origin, "workspaceId": workspace_id}, headers=people["member"]["headers"])
        assert created.status_code == 201, created.text
        listed = client.get("/vault/sites", params={"workspaceId": workspace_id}, headers=people["viewer"]["headers"]).json()["items"]
        assert [s["id"] for s in listed] == [created.json()["id"]]
        # The workspace's site is not in anyone's personal vault.
        assert client.get("/vault/sites", headers=people["member"]["headers"]).json()["items"] == []
        assert_error(client.get(f"/vault/sites/{created.json()['id']}", headers=people["member"]["headers"]), 404, "NOT_FOUND")
    finally:
        site.close()


def test_an_admin_cannot_touch_the_owner(client, team):
    workspace_id, people = team
    owner_id, admin = people["owner"]["id"], people["admin"]["headers"]
    members_url = f"/workspaces/{workspace_id}/members"
    assert_error(client.patch(f"{members_url}/{owner_id}", json={"role": "viewer"}, headers=admin), 403, "ROLE_CHANGE_FORBIDDEN")
    assert_error(client.delete(f"{members_url}/{owner_id}", headers=admin), 403, "ROLE_CHANGE_FORBIDDEN")
    assert_error(client.delete(f"{members_url}/{owner_id}", headers=people["owner"]["headers"]), 403, "ROLE_CHANGE_FORBIDDEN")
    assert_error(client.post(members_url, json={"email": people["owner"]["email"], "role": "viewer"}, headers=admin), 403, "ROLE_CHANGE_FORBIDDEN")
    # An admin does manage the others.
    changed = client.patch(f"{members_url}/{people['viewer']['id']}", json={"role": "member"}, headers=admin)
    assert changed.status_code == 200 and changed.json()["role"] == "member"


def test_member_management_errors(client, team):
    workspace_id, people = team
    members_url = f"/workspaces/{workspace_id}/members"
    owner = people["owner"]["headers"]
    assert_error(client.post(members_url, json={"email": "nobody@example.com", "role": "member"}, headers=owner), 404, "NOT_FOUND")
    for role in ("owner", "boss"):
        assert_error(client.post(members_url, json={"email": people["outsider"]["email"], "role": role}, headers=owner), 400, "VALIDATION_ERROR")
        assert_error(client.patch(f"{members_url}/{people['member']['id']}", json={"role": role}, headers=owner), 400, "VALIDATION_ERROR")
    assert_error(client.patch(f"{members_url}/{people['outsider']['id']}", json={"role": "member"}, headers=owner), 404, "MEMBER_NOT_FOUND")
    assert_error(client.delete(f"{members_url}/{people['outsider']['id']}", headers=owner), 404, "MEMBER_NOT_FOUND")
    assert_error(client.post(members_url, json={"email": people["outsider"]["email"], "role": "member"}, headers=people["member"]["headers"]), 403, "PERMISSION_DENIED")
    # Adding someone twice is idempotent.
    again = client.post(members_url, json={"email": people["member"]["email"], "role": "member"}, headers=owner)
    assert again.status_code == 200 and again.json()["role"] == "member"
    assert len(client.get(members_url, headers=owner).json()["items"]) == 4
    assert client.delete(f"{members_url}/{people['member']['id']}", headers=owner).status_code == 204
    assert_error(client.get(f"/workspaces/{workspace_id}", headers=people["member"]["headers"]), 404, "WORKSPACE_NOT_FOUND")


def test_the_member_limit_is_exact_under_parallel_adds(client, admin, local_stack):
    owner = person(client, admin, tier="team")
    workspace_id = client.post("/workspaces", json={"name": "Big"}, headers=owner["headers"]).json()["id"]
    candidates = [person(client) for _ in range(8)]
    url = f"{local_stack.url}/workspaces/{workspace_id}/members"

    def add(candidate):
        return httpx.post(url, json={"email": candidate["email"], "role": "member"}, headers=owner["headers"], timeout=60)

    with ThreadPoolExecutor(max_workers=8) as executor:
        statuses = sorted(response.status_code for response in executor.map(add, candidates))
    assert statuses == [201] * 4 + [403] * 4  # team: 5 members, the owner included
    assert len(client.get(f"/workspaces/{workspace_id}/members", headers=owner["headers"]).json()["items"]) == 5


def test_a_workspace_has_its_own_credits_and_billing_is_the_owners(client, team, admin):
    workspace_id, people = team
    owner = people["owner"]["headers"]
    billing = client.get("/billing", params={"workspaceId": workspace_id}, headers=owner).json()
    assert (billing["accountId"], billing["tier"], billing["credits"]) == (workspace_id, "team", 0)
    assert_error(client.get("/billing", params={"workspaceId": workspace_id}, headers=people["admin"]["headers"]), 403, "PERMISSION_DENIED")
    session = client.post("/sessions", json={"workspaceId": workspace_id}, headers=people["member"]["headers"]).json()["sessionToken"]
    chat = {"sessionToken": session, "message": "hi", "workspaceId": workspace_id}
    assert_error(client.post("/chat", json=chat, headers=people["member"]["headers"]), 402, "NO_CREDITS")
    client.post(f"/admin/accounts/{workspace_id}/credits", json={"credits": 10, "reason": "top up"}, headers=admin)
    assert client.post("/chat", json=chat, headers=people["member"]["headers"]).json()["creditsUsed"] == 1
    # Members see the workspace's session; it is not in their personal list.
    assert client.get(f"/sessions/{session}", params={"workspaceId": workspace_id}, headers=people["viewer"]["headers"]).status_code == 200
    assert client.get("/sessions", headers=people["member"]["headers"]).json()["items"] == []


def test_only_the_owner_deletes_and_a_deleted_workspace_is_gone(client, team):
    workspace_id, people = team
    assert_error(client.delete(f"/workspaces/{workspace_id}", headers=people["admin"]["headers"]), 403, "PERMISSION_DENIED")
    assert client.delete(f"/workspaces/{workspace_id}", headers=people["owner"]["headers"]).status_code == 204
    for role in ("owner", "member"):
        assert_error(client.get(f"/workspaces/{workspace_id}", headers=people[role]["headers"]), 404, "WORKSPACE_NOT_FOUND")
    assert_error(client.get("/vault/sites", params={"workspaceId": workspace_id}, headers=people["owner"]["headers"]), 404, "WORKSPACE_NOT_FOUND")
    assert client.get("/workspaces", headers=people["owner"]["headers"]).json()["items"] == []
