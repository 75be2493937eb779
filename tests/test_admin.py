"""Admin routes through the local stack (API.md §3)."""

from __future__ import annotations

import pytest

from .helpers import assert_error, bearer, register

pytestmark = pytest.mark.stack


@pytest.fixture
def member(client):
    session = register(client)
    client.post("/auth/accept-terms", json={}, headers=bearer(session["accessToken"]))
    return session


def test_non_admin_is_refused(client, member):
    assert_error(client.get("/admin/users", headers=bearer(member["accessToken"])), 403, "ADMIN_REQUIRED")


def test_terms_gate_applies_outside_auth(client):
    session = register(client)
    assert_error(client.get("/admin/users", headers=bearer(session["accessToken"])), 403, "TERMS_NOT_ACCEPTED")


def test_list_users_paginates(client, admin, member):
    first = client.get("/admin/users", params={"limit": 1}, headers=admin)
    assert first.status_code == 200
    body = first.json()
    assert len(body["items"]) == 1 and body["nextCursor"]
    second = client.get("/admin/users", params={"limit": 100, "cursor": body["nextCursor"]}, headers=admin)
    emails = [user["email"] for user in second.json()["items"]]
    assert member["user"]["email"] in emails + [body["items"][0]["email"]]
    assert_error(client.get("/admin/users", params={"cursor": "forged"}, headers=admin), 400, "VALIDATION_ERROR")
    assert_error(client.get("/admin/users", params={"limit": 0}, headers=admin), 400, "VALIDATION_ERROR")


def test_promote_and_disable(client, admin, member):
    user_id = member["user"]["id"]
    promoted = client.patch(f"/admin/users/{user_id}", json={"isAdmin": True}, headers=admin)
    assert promoted.status_code == 200 and promoted.json()["isAdmin"] is True
    assert client.get("/admin/users", headers=bearer(member["accessToken"])).status_code == 200
    disabled = client.patch(f"/admin/users/{user_id}", json={"disabled": True}, headers=admin)
    assert disabled.json()["disabled"] is True
    assert_error(client.get("/auth/me", headers=bearer(member["accessToken"])), 401, "TOKEN_REVOKED")
    login = client.post("/auth/login", json={"email": member["user"]["email"], "password": "correct horse battery"})
    assert_error(login, 401, "UNAUTHORIZED")
    assert_error(client.patch("/admin/users/usr_nobody", json={"isAdmin": True}, headers=admin), 404, "NOT_FOUND")
    assert_error(client.patch(f"/admin/users/{user_id}", json={"role": "x"}, headers=admin), 400, "VALIDATION_ERROR")


def test_revoke_tokens(client, admin, member):
    response = client.post(f"/admin/users/{member['user']['id']}/revoke-tokens", headers=admin)
    assert response.status_code == 204
    assert_error(client.get("/auth/me", headers=bearer(member["accessToken"])), 401, "TOKEN_REVOKED")
    assert_error(client.post("/auth/refresh", json={"refreshToken": member["refreshToken"]}), 401, "TOKEN_REVOKED")


def test_set_tier_and_subscription_status(client, admin, member):
    account_id = member["user"]["id"]
    response = client.patch(f"/admin/accounts/{account_id}", json={"tier": "pro", "subscriptionStatus": "active"}, headers=admin)
    assert response.status_code == 200
    me = client.get("/auth/me", headers=bearer(member["accessToken"])).json()["account"]
    assert (me["tier"], me["subscriptionStatus"]) == ("pro", "active")
    assert_error(client.patch(f"/admin/accounts/{account_id}", json={"tier": "platinum"}, headers=admin), 400, "VALIDATION_ERROR")
    assert_error(
        client.patch(f"/admin/accounts/{account_id}", json={"subscriptionStatus": "late"}, headers=admin), 400, "VALIDATION_ERROR"
    )
    assert_error(client.patch("/admin/accounts/usr_nobody", json={"tier": "pro"}, headers=admin), 404, "NOT_FOUND")


def test_grant_and_remove_credits(client, admin, member):
    account_id = member["user"]["id"]
    start = client.get("/auth/me", headers=bearer(member["accessToken"])).json()["account"]["credits"]
    granted = client.post(f"/admin/accounts/{account_id}/credits", json={"credits": 50, "reason": "goodwill"}, headers=admin)
    assert granted.status_code == 200 and granted.json() == {"credits": start + 50}
    retry_headers = {**admin, "Idempotency-Key": "grant-1"}
    for _ in range(2):  # the retry applies once
        again = client.post(f"/admin/accounts/{account_id}/credits", json={"credits": 5, "reason": "x"}, headers=retry_headers)
        assert again.json() == {"credits": start + 55}
    removed = client.post(f"/admin/accounts/{account_id}/credits", json={"credits": -(start + 55), "reason": "reset"}, headers=admin)
    assert removed.json() == {"credits": 0}
    too_much = client.post(f"/admin/accounts/{account_id}/credits", json={"credits": -1, "reason": "below zero"}, headers=admin)
    assert_error(too_much, 402, "NO_CREDITS")
    for bad in ({"credits": 1.5, "reason": "x"}, {"credits": "5", "reason": "x"}, {"credits": 5}, {"credits": True, "reason": "x"}):
        assert_error(client.post(f"/admin/accounts/{account_id}/credits", json=bad, headers=admin), 400, "VALIDATION_ERROR")
