"""GET /billing and GET /billing/ledger through the local stack, and the ledger under parallel spends."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .helpers import assert_error, signed_up

pytestmark = pytest.mark.stack


@pytest.fixture
def member(client):
    return signed_up(client)


def test_overview_of_a_new_account(client, member):
    account_id, headers = member
    response = client.get("/billing", headers=headers)
    assert response.status_code == 200
    assert response.json() == {
        "accountId": account_id,
        "tier": "free",
        "credits": 100,  # signupCredits of the default tiers file
        "monthlyCredits": 0,
        "purchasedCredits": 100,  # signup credits never lapse
        "subscriptionStatus": "none",
        "hasPaymentMethod": False,
        "autoTopUp": {"enabled": False, "thresholdCredits": 0, "topUpCredits": 0, "lastFailure": None},
    }


def test_ledger_newest_first_and_paginated(client, member, admin):
    account_id, headers = member
    for amount in (5, 7):
        client.post(f"/admin/accounts/{account_id}/credits", json={"credits": amount, "reason": f"+{amount}"}, headers=admin)
    first = client.get("/billing/ledger", params={"limit": 2}, headers=headers).json()
    assert [(entry["delta"], entry["balance"], entry["reason"]) for entry in first["items"]] == [(7, 112, "+7"), (5, 105, "+5")]
    assert set(first["items"][0]) == {"id", "delta", "balance", "reason", "createdAt"}
    rest = client.get("/billing/ledger", params={"limit": 2, "cursor": first["nextCursor"]}, headers=headers).json()
    assert [(entry["delta"], entry["balance"]) for entry in rest["items"]] == [(100, 100)]
    assert rest["nextCursor"] is None


def test_other_accounts_and_bad_parameters(client, member):
    _, headers = member
    assert_error(client.get("/billing", params={"workspaceId": "ws_someone"}, headers=headers), 404, "WORKSPACE_NOT_FOUND")
    assert_error(client.get("/billing/ledger", params={"limit": 101}, headers=headers), 400, "VALIDATION_ERROR")
    assert_error(client.get("/billing/ledger", params={"cursor": "x"}, headers=headers), 400, "VALIDATION_ERROR")
    assert_error(client.get("/billing"), 401, "UNAUTHORIZED")


def test_parallel_spends_admit_exactly_the_balance(client, member, admin, local_stack):
    """N parallel charges of 1 against a balance of K: exactly K succeed, the rest get NO_CREDITS."""
    account_id, headers = member
    url = f"{local_stack.url}/admin/accounts/{account_id}/credits"
    client.post(url, json={"credits": -93, "reason": "down to 7"}, headers=admin)

    def spend(_):
        return httpx.post(url, json={"credits": -1, "reason": "parallel"}, headers=admin, timeout=60)

    with ThreadPoolExecutor(max_workers=10) as executor:
        responses = list(executor.map(spend, range(20)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 7 + [402] * 13
    assert {response.json()["code"] for response in responses if response.status_code == 402} == {"NO_CREDITS"}
    assert client.get("/billing", headers=headers).json()["credits"] == 0
    ledger = client.get("/billing/ledger", params={"limit": 100}, headers=headers).json()["items"]
    assert sum(entry["delta"] for entry in ledger) == 0 and ledger[0]["balance"] == 0
