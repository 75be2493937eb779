"""OAuth2 with PKCE for oauth2 sites, and site token refresh (API.md §6)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest

from conduit.identity import login as identity

from conduit.vault import site_oauth
from conduit.platform.errors import ConduitError
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.sites import SitesRepository
from conduit.vault.tool_calls import call_tool

from .helpers import assert_error, bearer, register
from .sites import OAuthServer, TestSite, rest_manifest


@pytest.fixture
def oauth_site():
    server = OAuthServer()
    site = server.install(TestSite())
    yield site, server
    site.close()


# --- authorization through the local stack -------------------------------------------


@pytest.fixture
def user(client):
    headers = bearer(register(client)["accessToken"])
    client.post("/auth/accept-terms", json={}, headers=headers)
    return headers


@pytest.mark.stack
def test_start_and_complete_with_pkce(client, user, oauth_site):
    site, server = oauth_site
    started = client.post("/vault/oauth/start", json={"url": site.origin, "redirectUri": "https://app.example/cb"}, headers=user)
    assert started.status_code == 200, started.text
    body = started.json()
    query = parse_qs(urlsplit(body["authorizationUrl"]).query)
    assert body["authorizationUrl"].startswith(f"{site.origin}/oauth/authorize?")
    assert query["state"] == [body["state"]] and query["response_type"] == ["code"]
    assert query["scope"] == ["read"]  # the least scope by default (API.md §11), of scopes published as an object
    assert query["redirect_uri"] == ["https://app.example/cb"]
    code = server.approve(body["authorizationUrl"])
    completed = client.post("/vault/oauth/complete", json={"state": body["state"], "code": code}, headers=user)
    assert completed.status_code == 201, completed.text
    assert (completed.json()["authType"], completed.json()["hasToken"]) == ("oauth2", True)
    assert server.exchanges == ["authorization_code"]  # the verifier matched the challenge
    assert "at-1" not in completed.text and "rt-1" not in completed.text
    # A state is used once.
    replay = client.post("/vault/oauth/complete", json={"state": body["state"], "code": code}, headers=user)
    assert_error(replay, 400, "VALIDATION_ERROR")


@pytest.mark.stack
def test_a_code_the_site_refuses_stores_nothing(client, user, oauth_site):
    site, server = oauth_site
    body = client.post("/vault/oauth/start", json={"url": site.origin}, headers=user).json()
    server.approve(body["authorizationUrl"])
    response = client.post("/vault/oauth/complete", json={"state": body["state"], "code": "forged"}, headers=user)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert response.json()["details"][0]["field"] == "code"
    assert client.get("/vault/sites", headers=user).json()["items"] == []


@pytest.mark.stack
def test_another_accounts_state_and_non_oauth_sites(client, user, oauth_site):
    site, server = oauth_site
    body = client.post("/vault/oauth/start", json={"url": site.origin}, headers=user).json()
    stranger = bearer(register(client)["accessToken"])
    client.post("/auth/accept-terms", json={}, headers=stranger)
    code = server.approve(body["authorizationUrl"])
    assert_error(client.post("/vault/oauth/complete", json={"state": body["state"], "code": code}, headers=stranger), 400, "VALIDATION_ERROR")
    bearer_site = TestSite(manifest=rest_manifest)
    try:
        assert_error(client.post("/vault/oauth/start", json={"url": bearer_site.origin}, headers=user), 400, "VALIDATION_ERROR")
    finally:
        bearer_site.close()
    assert_error(client.post("/vault/oauth/start", json={"url": "https://10.0.0.1"}, headers=user), 400, "INVALID_URL")


# --- refresh (in-process: tool calls are its callers) ----------------------------------


@pytest.fixture
def connected(aws, oauth_site):
    """An oauth2 site connected through start/complete, and the stored site item."""
    site, server = oauth_site
    session = identity.register(f"oauth{time.monotonic_ns()}@example.com", "long password", None)
    account = AccountsRepository().get(session.user.id)
    started = site_oauth.start(account, site.origin, None)
    view = site_oauth.complete(account, started["state"], server.approve(started["authorizationUrl"]))
    return server, lambda: SitesRepository().get_site(account.account_id, view["id"])


def test_a_rejected_token_is_refreshed_once_and_the_call_retried(connected):
    server, stored = connected
    server.valid_access = set()  # the site revoked the access token early
    assert call_tool(stored(), "whoami", {}) == {"token": "at-2"}
    assert server.exchanges == ["authorization_code", "refresh_token"]
    # The rotated refresh token was stored: the next refresh uses rt-2, which the site accepts.
    server.valid_access = set()
    assert call_tool(stored(), "whoami", {}) == {"token": "at-3"}


def test_a_token_about_to_expire_is_refreshed_before_the_call(connected):
    server, stored = connected
    SitesRepository().update(stored()["accountId"], stored()["siteId"], {"tokenExpiresAt": int(time.time()) + 5})
    assert call_tool(stored(), "whoami", {}) == {"token": "at-2"}
    assert server.exchanges == ["authorization_code", "refresh_token"]
    assert "refreshLockUntil" not in stored()


def test_concurrent_refreshes_make_one_exchange(connected):
    server, stored = connected
    server.valid_access = set()
    stale = stored()
    with ThreadPoolExecutor(max_workers=6) as executor:
        results = list(executor.map(lambda _: call_tool(stale, "whoami", {}), range(6)))
    assert server.exchanges == ["authorization_code", "refresh_token"]
    assert {result["token"] for result in results} == {"at-2"}


def test_a_refresh_the_site_refuses_marks_the_site_expired(connected):
    server, stored = connected
    server.valid_access = set()
    server.refuse_refresh = True
    with pytest.raises(ConduitError) as raised:
        call_tool(stored(), "whoami", {})
    assert raised.value.code == "TOOL_EXECUTION_ERROR"
    assert stored()["status"] == "expired" and "refreshLockUntil" not in stored()
    with pytest.raises(ConduitError):  # no further exchange is attempted for an expired site
        call_tool(stored(), "whoami", {})
    assert server.exchanges == ["authorization_code", "refresh_token"]
