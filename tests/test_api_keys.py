"""API keys (API.md §13): shape, one-time display, hashes only, revocation, expiry, limits, scope."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from conduit.identity import api_keys

from conduit.identity import login as identity
from conduit.identity.gate import authenticate
from conduit.platform.errors import ConduitError
from conduit.platform.aws import dynamodb_client
from conduit.platform.settings import get_settings
from tests.helpers import assert_error, bearer, register
from tests.test_workspaces import person, team  # noqa: F401 - fixture

# --- in-process --------------------------------------------------------------------------------


def _user():
    session = identity.register(f"k{id(object())}@example.com", "long password", None)
    identity.accept_terms(session.user.id, None)
    return session.user


def test_a_key_is_long_url_safe_and_stored_only_as_its_hash(aws):
    user = _user()
    made = api_keys.create_key(user.id, user.id, "free", "ci", None)
    key = made["key"]
    assert key.startswith("cdk_") and len(key) - 4 >= 32
    assert all(c.isalnum() or c in "-_" for c in key[4:])
    assert made["prefix"] == key[:12] and made["expiresAt"] is None
    table = dynamodb_client().scan(TableName=get_settings().table_name)["Items"]
    dump = json.dumps(table)
    assert key not in dump and key[12:] not in dump
    assert hashlib.sha256(key.encode()).hexdigest() in dump
    caller = authenticate({"Authorization": f"Bearer {key}"})
    assert (caller.user_id, caller.key.account_id) == (user.id, user.id)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # right ids, wrong secret
        lambda k: k[:-1],  # wrong length
        lambda k: "cdk_" + "0" * 24 + k[28:],  # unknown key id
        lambda k: "cdk_",
    ],
)
def test_a_wrong_key_is_an_invalid_token(aws, mangle):
    user = _user()
    key = api_keys.create_key(user.id, user.id, "free", "ci", None)["key"]
    with pytest.raises(ConduitError) as raised:
        authenticate({"Authorization": f"Bearer {mangle(key)}"})
    assert raised.value.code == "INVALID_TOKEN"


def test_revoked_and_expired_keys(aws):
    user = _user()
    made = api_keys.create_key(user.id, user.id, "free", "ci", 1)
    api_keys.revoke_key(user.id, made["id"])
    with pytest.raises(ConduitError) as raised:
        authenticate({"Authorization": f"Bearer {made['key']}"})
    assert raised.value.code == "TOKEN_REVOKED"
    with pytest.raises(ConduitError) as raised:
        api_keys.revoke_key(user.id, made["id"])
    assert raised.value.code == "NOT_FOUND"

    expiring = api_keys.create_key(user.id, user.id, "free", "old", 1)
    dynamodb_client().update_item(
        TableName=get_settings().table_name,
        Key={"PK": {"S": f"USER#{user.id}"}, "SK": {"S": f"APIKEY#{expiring['id']}"}},
        UpdateExpression="SET keyExpiresAt = :past",
        ExpressionAttributeValues={":past": {"S": "2020-01-01T00:00:00.000000Z"}},
    )
    with pytest.raises(ConduitError) as raised:
        authenticate({"Authorization": f"Bearer {expiring['key']}"})
    assert raised.value.code == "TOKEN_EXPIRED"


def test_the_tier_caps_keys_and_revoking_frees_room(aws, monkeypatch, tmp_path):
    from conduit.platform.tiers import DEFAULT_TIERS_FILE, get_tiers

    tiers = json.loads(DEFAULT_TIERS_FILE.read_text())
    tiers["tiers"]["free"]["maxApiKeys"] = 2
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps(tiers))
    monkeypatch.setenv("TIERS_FILE", str(path))
    get_settings.cache_clear()
    get_tiers.cache_clear()
    try:
        assert get_tiers().tier("pro").limit("apiKeys") == 25  # the default when the file says nothing
        user = _user()
        first = api_keys.create_key(user.id, user.id, "free", "a", None)
        api_keys.create_key(user.id, user.id, "free", "b", None)
        with pytest.raises(ConduitError) as raised:
            api_keys.create_key(user.id, user.id, "free", "c", None)
        assert raised.value.code == "FEATURE_LIMIT_REACHED"
        api_keys.revoke_key(user.id, first["id"])
        api_keys.create_key(user.id, user.id, "free", "c", None)
    finally:
        get_tiers.cache_clear()


# --- through the local stack ----------------------------------------------------------------------

stack = pytest.mark.stack


@stack
def test_create_list_use_and_revoke(client):
    session = register(client)
    headers = bearer(session["accessToken"])
    client.post("/auth/accept-terms", json={}, headers=headers)
    made = client.post("/api-keys", json={"name": "ci", "expiresInDays": 30}, headers=headers)
    assert made.status_code == 201, made.text
    body = made.json()
    assert set(body) == {"id", "name", "key", "prefix", "accountId", "createdAt", "expiresAt"}
    assert body["accountId"] == session["user"]["id"] and body["expiresAt"] > body["createdAt"]
    key_headers = bearer(body["key"])

    listed = client.get("/api-keys", headers=headers).json()
    assert [k["id"] for k in listed["items"]] == [body["id"]] and "key" not in listed["items"][0]
    assert body["key"] not in json.dumps(listed)

    me = client.get("/auth/me", headers=key_headers)
    assert me.status_code == 200 and me.json()["id"] == session["user"]["id"]
    assert client.get("/vault/sites", headers=key_headers).status_code == 200

    # A key cannot manage keys nor sign out.
    assert_error(client.post("/api-keys", json={"name": "x"}, headers=key_headers), 403, "PERMISSION_DENIED")
    assert_error(client.get("/api-keys", headers=key_headers), 403, "PERMISSION_DENIED")
    assert_error(client.delete(f"/api-keys/{body['id']}", headers=key_headers), 403, "PERMISSION_DENIED")
    assert_error(client.post("/auth/logout", headers=key_headers), 403, "PERMISSION_DENIED")
    assert_error(client.post("/auth/logout-all", headers=key_headers), 403, "PERMISSION_DENIED")

    assert client.delete(f"/api-keys/{body['id']}", headers=headers).status_code == 204
    assert_error(client.get("/auth/me", headers=key_headers), 401, "TOKEN_REVOKED")
    assert_error(client.delete(f"/api-keys/{body['id']}", headers=headers), 404, "NOT_FOUND")
    assert client.get("/api-keys", headers=headers).json()["items"] == []


@stack
@pytest.mark.parametrize("days", [0, 366, "5", 1.5, True])
def test_expiry_is_a_strict_integer_from_1_to_365(client, days):
    headers = person(client)["headers"]
    assert_error(client.post("/api-keys", json={"name": "x", "expiresInDays": days}, headers=headers), 400, "VALIDATION_ERROR")
    assert client.get("/api-keys", headers=headers).json()["items"] == []


@stack
def test_a_workspace_key_acts_with_the_makers_role_at_the_time_of_use(client, team):  # noqa: F811
    workspace_id, people = team
    owner, member = people["owner"], people["member"]
    made = client.post("/api-keys", json={"name": "ws", "workspaceId": workspace_id}, headers=member["headers"])
    assert made.status_code == 201, made.text
    assert made.json()["accountId"] == workspace_id
    key_headers = bearer(made.json()["key"])
    # Acts on the workspace without naming it, and never on another account.
    assert client.get("/agents", headers=key_headers).status_code == 200
    created = client.post("/agents", json={"name": "By key", "systemPrompt": "hi"}, headers=key_headers)
    assert created.status_code == 201, created.text
    assert [a["id"] for a in client.get("/agents", params={"workspaceId": workspace_id}, headers=owner["headers"]).json()["items"]] == [created.json()["id"]]
    assert client.get("/agents", headers=member["headers"]).json()["items"] == []  # not the member's own
    other = people["outsider"]["id"]
    assert_error(client.get("/agents", params={"workspaceId": other}, headers=key_headers), 403, "PERMISSION_DENIED")
    assert_error(client.post("/workspaces", json={"name": "No"}, headers=key_headers), 403, "PERMISSION_DENIED")
    # Demoted to viewer: the same key can read but no longer write.
    changed = client.patch(f"/workspaces/{workspace_id}/members/{member['id']}", json={"role": "viewer"}, headers=owner["headers"])
    assert changed.status_code == 200, changed.text
    assert client.get("/agents", headers=key_headers).status_code == 200
    assert_error(client.post("/agents", json={"name": "No", "systemPrompt": "hi"}, headers=key_headers), 403, "PERMISSION_DENIED")
    # Removed: the workspace is gone for the key too.
    assert client.delete(f"/workspaces/{workspace_id}/members/{member['id']}", headers=owner["headers"]).status_code == 204
    assert_error(client.get("/agents", headers=key_headers), 404, "WORKSPACE_NOT_FOUND")


@stack
def test_a_non_member_cannot_make_a_workspace_key(client, team):  # noqa: F811
    workspace_id, people = team
    denied = client.post("/api-keys", json={"name": "x", "workspaceId": workspace_id}, headers=people["outsider"]["headers"])
    assert_error(denied, 404, "WORKSPACE_NOT_FOUND")


@stack
def test_max_api_keys_holds_under_parallel_creates(local_stack, client, admin):
    """The team tier's default of 25, against 40 parallel creates: exactly 25 keys exist."""
    someone = person(client, admin, tier="team")  # 600 requests a minute: the burst is not rate limited
    from tests.helpers import client_from_new_address

    def create(index):
        with client_from_new_address(local_stack) as own:
            return own.post("/api-keys", json={"name": f"k{index}"}, headers=someone["headers"])

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(create, range(40)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(201) == 25 and statuses.count(403) == 15, statuses
    assert all(r.json()["code"] == "FEATURE_LIMIT_REACHED" for r in answers if r.status_code == 403)
    listed = client.get("/api-keys", params={"limit": 100}, headers=someone["headers"]).json()["items"]
    assert len(listed) == 25
