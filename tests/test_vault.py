"""The vault through the local stack, against real sites on loopback (API.md §6)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .helpers import assert_error, bearer, register
from .sites import TestSite, named_manifest, rest_manifest, tool

pytestmark = pytest.mark.stack


@pytest.fixture
def sites():
    created: list[TestSite] = []

    def make(**options) -> TestSite:
        site = TestSite(**options)
        created.append(site)
        return site

    yield make
    for site in created:
        site.close()


@pytest.fixture
def user(client):
    session = register(client)
    headers = bearer(session["accessToken"])
    assert client.post("/auth/accept-terms", json={}, headers=headers).status_code == 200
    return headers


def add(client, headers, url, **body):
    return client.post("/vault/sites", json={"url": url, **body}, headers=headers)


def test_documented_shape_from_a_bare_origin(client, user, sites):
    site = sites(manifest=rest_manifest)
    response = add(client, user, site.origin, token="Bearer site-token-1")
    assert response.status_code == 201, response.text
    body = response.json()
    prefix = site.domain.replace(".", "_").replace(":", "_")
    assert body["id"].startswith("site_")
    assert (body["domain"], body["name"], body["version"], body["authType"]) == (site.domain, "Test Site", "1.0.0", "bearer")
    assert (body["hasToken"], body["status"]) == (True, "active")
    assert [t["prefixedName"] for t in body["tools"]] == [f"{prefix}_search", f"{prefix}_posts_list"]
    assert [t["name"] for t in body["tools"]] == ["search", "posts.list"]
    assert body["tools"][0]["inputSchema"] == {"type": "object", "properties": {"q": {"type": "string"}}}
    assert "site-token-1" not in response.text
    # The token went with the manifest request, without its "Bearer " prefix doubled.
    assert site.requests[-1].headers["authorization"] == "Bearer site-token-1"


def test_cms_plugin_shape_at_the_third_standard_path(client, user, sites):
    site = sites(manifest=named_manifest, manifest_path="/api/servio/manifest")
    response = add(client, user, site.origin + "/")
    assert response.status_code == 201, response.text
    assert [t["name"] for t in response.json()["tools"]] == ["xenforo.searchThreads"]
    assert response.json()["hasToken"] is False
    tried = [r.path for r in site.requests]
    assert tried == ["/.well-known/servio.json", "/servio.json", "/api/servio/manifest"]


def test_a_url_with_a_path_is_the_manifest_itself(client, user, sites):
    site = sites(manifest=rest_manifest, manifest_path="/custom/manifest.json")
    assert add(client, user, site.origin + "/custom/manifest.json").status_code == 201
    assert [r.path for r in site.requests] == ["/custom/manifest.json"]


def test_protected_manifest_needs_the_token(client, user, sites):
    site = sites(manifest=rest_manifest, required_token="secret")
    assert_error(add(client, user, site.origin), 404, "MANIFEST_NOT_FOUND")
    assert_error(add(client, user, site.origin, token="wrong"), 404, "MANIFEST_NOT_FOUND")
    assert add(client, user, site.origin, token="secret").status_code == 201


def test_list_get_and_another_accounts_site(client, user, sites):
    site = sites(manifest=rest_manifest)
    created = add(client, user, site.origin, token="t0k3n-value").json()
    listed = client.get("/vault/sites", headers=user).json()
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert listed["items"][0]["hasToken"] is True and "tools" not in listed["items"][0]
    assert listed["nextCursor"] is None
    fetched = client.get(f"/vault/sites/{created['id']}", headers=user)
    assert fetched.json() == created
    assert "t0k3n-value" not in fetched.text + json.dumps(listed)
    stranger = bearer(register(client)["accessToken"])
    client.post("/auth/accept-terms", json={}, headers=stranger)
    assert_error(client.get(f"/vault/sites/{created['id']}", headers=stranger), 404, "NOT_FOUND")
    assert_error(client.delete(f"/vault/sites/{created['id']}", headers=stranger), 404, "NOT_FOUND")
    assert client.get("/vault/sites", headers=stranger).json()["items"] == []


def test_same_domain_twice_is_token_exists(client, user, sites):
    site = sites(manifest=rest_manifest)
    assert add(client, user, site.origin).status_code == 201
    assert_error(add(client, user, site.origin + "/.well-known/servio.json"), 409, "TOKEN_EXISTS")


def test_tokens_are_encrypted_at_rest(client, user, sites, local_stack):
    site = sites(manifest=rest_manifest)
    add(client, user, site.origin, token="plaintext-access", refreshToken="plaintext-refresh")
    items = local_stack.emulator.client("dynamodb").scan(TableName="ConduitTable")["Items"]
    dump = json.dumps(items)
    assert "plaintext-access" not in dump and "plaintext-refresh" not in dump
    stored = next(item for item in items if item["SK"]["S"].startswith("SITE#") and item["domain"]["S"] == site.domain)
    assert stored["accessToken"]["S"] and stored["refreshToken"]["S"]


def test_replace_token_and_delete(client, user, sites):
    site = sites(manifest=rest_manifest)
    created = add(client, user, site.origin).json()
    assert created["hasToken"] is False
    patched = client.patch(f"/vault/sites/{created['id']}", json={"token": "Bearer new"}, headers=user)
    assert patched.status_code == 200 and patched.json()["hasToken"] is True
    assert_error(client.patch(f"/vault/sites/{created['id']}", json={"token": ""}, headers=user), 400, "VALIDATION_ERROR")
    assert_error(client.patch(f"/vault/sites/{created['id']}", json={}, headers=user), 400, "VALIDATION_ERROR")
    assert client.delete(f"/vault/sites/{created['id']}", headers=user).status_code == 204
    assert_error(client.get(f"/vault/sites/{created['id']}", headers=user), 404, "NOT_FOUND")
    assert_error(client.delete(f"/vault/sites/{created['id']}", headers=user), 404, "NOT_FOUND")
    # The domain is free again.
    assert add(client, user, site.origin).status_code == 201


def test_vault_limit_is_exact_under_parallel_creates(client, user, sites, local_stack):
    free_tier_max_sites = 3
    candidates = [sites(manifest=rest_manifest) for _ in range(7)]

    def create(site):
        return httpx.post(local_stack.url + "/vault/sites", json={"url": site.origin}, headers=user, timeout=60)

    with ThreadPoolExecutor(max_workers=7) as executor:
        responses = list(executor.map(create, candidates))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * free_tier_max_sites + [403] * (7 - free_tier_max_sites)
    refused = next(response for response in responses if response.status_code == 403)
    assert_error(refused, 403, "VAULT_LIMIT_REACHED")
    assert len(client.get("/vault/sites", headers=user).json()["items"]) == free_tier_max_sites


@pytest.mark.parametrize(
    ("manifest", "fields"),
    [
        ({"version": "1", "server": {"url": "https://a.example"}, "tools": [tool("x")]}, ["name"]),
        ({"name": "n", "version": "1", "server": {"url": "https://a.example"}, "tools": []}, ["tools"]),
        ({"name": "n", "version": "1", "server": {"url": "https://a.example"}}, ["tools"]),
        ({"name": "n", "version": "1", "tools": [tool("x")]}, ["server.url"]),
        ({"name": "n", "version": "1", "server": {"url": "http://plain.example"}, "tools": [tool("x")]}, ["server.url"]),
        ({"name": "n", "version": {"v": 3}, "server": {"url": "https://a.example"}, "tools": [tool("x")]}, ["version"]),
        (
            {"name": "n", "version": "1", "server": {"url": "https://a.example"}, "tools": [{"name": "x", "description": "d", "input_schema": {"type": "nope"}}]},
            ["tools", "tools.0.input_schema.type"],  # no valid tool remains: refused with every problem
        ),
        (
            {"name": "n", "version": "1", "server": {"url": "https://a.example"}, "tools": [{"name": "x", "description": 5, "input_schema": {}}]},
            ["tools", "tools.0.description"],
        ),
        (
            {"name": "n", "version": "1", "server": {"url": "https://a.example"}, "auth": {"type": "oauth2"}, "tools": [tool("x")]},
            ["auth.authorization_url", "auth.token_url"],
        ),
        (
            {"name": "n", "version": "1", "server": {"url": "ftp://a.example"}, "tools": [{"name": "x", "input_schema": {"type": "nope"}}, "junk"]},
            ["server.url", "tools", "tools.0.input_schema.type", "tools.1"],
        ),
        (["not", "an", "object"], ["manifest"]),
    ],
)
def test_invalid_manifests_name_every_problem_and_store_nothing(client, user, sites, manifest, fields):
    site = sites(manifest=manifest)
    response = add(client, user, site.origin)
    assert_error(response, 422, "MANIFEST_INVALID")
    assert sorted(detail["field"] for detail in response.json()["details"]) == sorted(fields)
    assert client.get("/vault/sites", headers=user).json()["items"] == []


def test_manifest_that_is_not_json_or_too_large(client, user, sites):
    assert_error(add(client, user, sites(manifest=b"<html>not json</html>").origin), 422, "MANIFEST_INVALID")
    huge = {"name": "n", "version": "1", "server": {"url": "https://a.example"}, "tools": [tool("x")], "padding": "x" * (10 * 1024 * 1024)}
    response = add(client, user, sites(manifest=huge).origin)
    assert_error(response, 422, "MANIFEST_INVALID")
    assert "larger than" in response.json()["details"][0]["message"]


def test_no_manifest_and_nothing_listening(client, user, sites):
    assert_error(add(client, user, sites().origin), 404, "MANIFEST_NOT_FOUND")
    closed = sites()
    origin = closed.origin
    closed.close()
    assert_error(add(client, user, origin), 404, "MANIFEST_NOT_FOUND")


@pytest.mark.parametrize(
    "url",
    ["ftp://files.example/x", "not a url", "//no-scheme.example", "https://10.0.0.1/", "https://169.254.169.254/latest", "http://10.1.2.3/", "https://[::ffff:10.0.0.1]/", "https://user:pw@127.0.0.1/"],
)
def test_unusable_or_refused_urls_are_invalid_url(client, user, url):
    assert_error(add(client, user, url), 400, "INVALID_URL")


def test_refresh_updates_tools_and_a_failed_refresh_keeps_the_old_manifest(client, user, sites):
    tools = [tool("search")]
    state = {"broken": False}

    def manifest(site):
        return {"broken": True} if state["broken"] else rest_manifest(site, tools=list(tools))

    site = sites(manifest=manifest)
    created = add(client, user, site.origin).json()
    tools.append(tool("create"))
    refreshed = client.post(f"/vault/sites/{created['id']}/refresh", headers=user)
    assert refreshed.status_code == 200
    assert [t["name"] for t in refreshed.json()["tools"]] == ["search", "create"]
    state["broken"] = True
    assert_error(client.post(f"/vault/sites/{created['id']}/refresh", headers=user), 422, "MANIFEST_INVALID")
    assert [t["name"] for t in client.get(f"/vault/sites/{created['id']}", headers=user).json()["tools"]] == ["search", "create"]


def redirect_to(location):
    return lambda site, path, headers, body: (302, b"", {"Location": location})


def test_redirect_to_a_private_address_is_invalid_url(client, user, sites):
    site = sites(routes={("GET", "/m.json"): redirect_to("http://10.0.0.7/m.json")})
    assert_error(add(client, user, site.origin + "/m.json"), 400, "INVALID_URL")


def test_redirect_loop_is_manifest_not_found(client, user, sites):
    site = sites(routes={("GET", "/a"): redirect_to("/b"), ("GET", "/b"): redirect_to("/a")})
    response = add(client, user, site.origin + "/a")
    assert_error(response, 404, "MANIFEST_NOT_FOUND")
    assert client.get("/vault/sites", headers=user).json()["items"] == []


def test_a_redirect_on_the_same_site_is_followed(client, user, sites):
    site = sites(manifest=rest_manifest, routes={("GET", "/old.json"): redirect_to("/.well-known/servio.json")})
    assert add(client, user, site.origin + "/old.json").status_code == 201


def test_a_manifest_that_never_comes_is_manifest_not_found(client, user, sites):
    def hang(site, path, headers, body):
        time.sleep(7)  # past the 5 s manifest timeout
        return 200, {}

    site = sites(routes={("GET", "/slow.json"): hang})
    assert_error(add(client, user, site.origin + "/slow.json"), 404, "MANIFEST_NOT_FOUND")
