"""Real sites (API.md §11): every manifest of the corpus, served on loopback by a site that routes
as its CMS plugin does, added both ways and called end to end (chat, agent runs); the plugins'
out-of-band OAuth flow; hostile manifests through the stack."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conduit.identity import login as identity

from conduit.vault import sites as vault
from conduit.vault.manifests import DISCOVERY
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.sites import SitesRepository
from conduit.vault.tool_calls import call_tool

from .helpers import assert_error, signed_up
from .sites import CORPUS_DIR, PLUGINS, OobOAuthPlugin, PluginSite, TestSite, corpus_manifest

CORPUS = sorted(PLUGINS)


def test_every_corpus_manifest_has_a_plugin_site():
    assert sorted(path.name for path in CORPUS_DIR.glob("*.json")) == CORPUS


def example_arguments(schema: dict) -> dict:
    """Arguments a tool accepts: its required properties, plus its first optional string."""
    properties = schema.get("properties") or {}
    arguments = {}
    for name in schema.get("required", []):
        kind = properties[name].get("type", "string")
        kind = kind[0] if isinstance(kind, list) else kind
        arguments[name] = {"integer": 42, "number": 1.5, "boolean": True}.get(kind, "hello")
    optional = [
        name for name, spec in properties.items() if spec.get("type") == "string" and "enum" not in spec and name not in arguments
    ]
    if optional:
        arguments[optional[0]] = "lamps"
    return arguments


def tool_to_call(corpus_name: str) -> tuple[str, dict]:
    """A tool with arguments: the first with required ones, else the first."""
    tools = corpus_manifest(corpus_name, "https://x.example")["tools"]
    chosen = next((tool for tool in tools if tool["input_schema"].get("required")), tools[0])
    return chosen["name"], example_arguments(chosen["input_schema"])


@pytest.fixture
def plugin_sites():
    created: list[TestSite] = []

    def make(name: str, **options) -> PluginSite:
        site = PluginSite(name, **options)
        created.append(site)
        return site

    yield make
    for site in created:
        site.close()


# --- in-process: every tool of every plugin -----------------------------------------------------


@pytest.fixture
def account(aws):
    session = identity.register(f"plugins{time.monotonic_ns()}@example.com", "long password", None)
    return AccountsRepository().get(session.user.id)


@pytest.mark.parametrize("name", CORPUS)
def test_every_tool_reaches_the_plugins_handler(account, plugin_sites, name):
    site = plugin_sites(name)
    view = vault.add_site(account, site.origin, "plugin-token", None)
    assert [tool["name"] for tool in view["tools"]] == site.tool_names and view["warnings"] == []
    stored = SitesRepository().get_site(account.account_id, view["id"])
    for tool in view["tools"]:
        arguments = example_arguments(tool["inputSchema"])
        result = call_tool(stored, tool["prefixedName"], arguments)
        assert result == {"handledBy": name, "tool": tool["name"], "arguments": arguments}
    assert [(call.tool, call.authorization) for call in site.calls] == [(tool, "Bearer plugin-token") for tool in site.tool_names]


def test_xenforo_server_url_is_not_a_tool_handler(account, plugin_sites):
    """The loopback XenForo answers 404 where the add-on does: a call by server.url would fail."""
    site = plugin_sites("xenforo-ai-connect-1.2.27.json")
    server_url = corpus_manifest(site.corpus_name, site.origin)["server"]["url"]
    for url in (f"{server_url}/tools/xenforo.getThread", server_url):
        response = httpx.post(url, json={"name": "xenforo.getThread", "arguments": {"thread_id": 1}}, headers={"Authorization": "Bearer plugin-token"})
        assert response.status_code == 404
    view = vault.add_site(account, site.origin, "plugin-token", None)
    stored = SitesRepository().get_site(account.account_id, view["id"])
    call_tool(stored, "xenforo.getThread", {"thread_id": 7})
    assert [r.path for r in site.requests if r.method == "POST"][-1] == "/api/aiconnect-tools"


# --- through the local stack: added both ways, called by chat and by an agent run ----------------


def add(client, headers, url, **body):
    return client.post("/vault/sites", json={"url": url, **body}, headers=headers)


def wait_out_the_minute(response, retry):
    while response.status_code == 429:
        time.sleep(int(response.headers["Retry-After"]))
        response = retry()
    return response


@pytest.mark.stack
@pytest.mark.parametrize("name", CORPUS)
def test_added_by_bare_origin_and_called_through_chat(client, plugin_sites, name):
    _, headers = signed_up(client)
    site = plugin_sites(name)
    response = add(client, headers, site.origin, token="Bearer plugin-token")
    assert response.status_code == 201, response.text
    body = response.json()
    assert [tool["name"] for tool in body["tools"]] == site.tool_names and body["warnings"] == []
    # Discovery walked the documented order and stopped at the plugin's path.
    position = DISCOVERY.index(site.plugin.manifest_path)
    assert [r.path for r in site.requests] == list(DISCOVERY[: position + 1])

    tool_name, arguments = tool_to_call(name)
    prefixed = next(tool["prefixedName"] for tool in body["tools"] if tool["name"] == tool_name)
    session = client.post("/sessions", json={}, headers=headers).json()["sessionToken"]

    def send():
        message = f"call {prefixed} {json.dumps(arguments)}"
        return client.post("/chat", json={"sessionToken": session, "message": message}, headers=headers)

    chat = wait_out_the_minute(send(), send)
    assert chat.status_code == 200, chat.text
    (call,) = chat.json()["toolCalls"]
    assert (call["tool"], call["status"], call["arguments"]) == (prefixed, "ok", arguments)
    assert [(c.tool, c.arguments, c.authorization) for c in site.calls] == [(tool_name, arguments, "Bearer plugin-token")]
    assert json.dumps({"handledBy": name, "tool": tool_name, "arguments": arguments}, separators=(",", ":")) in chat.json()["message"]["content"]


@pytest.mark.stack
@pytest.mark.parametrize("name", CORPUS)
def test_added_by_manifest_url_and_called_by_an_agent_run(client, plugin_sites, name):
    _, headers = signed_up(client)
    site = plugin_sites(name, token="run-token")
    response = add(client, headers, site.origin + site.plugin.manifest_path, token="run-token")
    assert response.status_code == 201, response.text
    assert [r.path for r in site.requests] == [site.plugin.manifest_path]  # the URL is the manifest itself
    assert [tool["name"] for tool in response.json()["tools"]] == site.tool_names

    tool_name, arguments = tool_to_call(name)
    prefixed = next(tool["prefixedName"] for tool in response.json()["tools"] if tool["name"] == tool_name)
    agent = client.post("/agents", json={"name": "Plugin agent", "systemPrompt": f"call {prefixed} {json.dumps(arguments)}"}, headers=headers)
    assert agent.status_code == 201, agent.text

    def start():
        return client.post(f"/agents/{agent.json()['id']}/runs", json={}, headers=headers)

    started = wait_out_the_minute(start(), start)
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 90
    while True:
        run = client.get(f"/runs/{started.json()['id']}", headers=headers)
        if run.status_code == 200 and run.json()["status"] != "running":
            break
        assert time.monotonic() < deadline, run.text
        time.sleep(1 if run.status_code == 200 else int(run.headers.get("Retry-After", 1)))
    assert run.json()["status"] == "succeeded", run.text
    tool_step = next(step for step in run.json()["steps"] if step["type"] == "tool")
    assert (tool_step["tool"], tool_step["status"]) == (prefixed, "ok")
    assert [(c.tool, c.arguments, c.authorization) for c in site.calls] == [(tool_name, arguments, "Bearer run-token")]


@pytest.mark.stack
def test_a_failed_discovery_names_every_url_tried_once(client, plugin_sites):
    _, headers = signed_up(client)
    site = TestSite()
    try:
        response = add(client, headers, site.origin)
    finally:
        site.close()
    assert_error(response, 404, "MANIFEST_NOT_FOUND")
    message = response.json()["error"]
    for path in DISCOVERY:
        assert message.count(f"{site.origin}{path} ") == 1, (path, message)
    assert message.count(site.origin) == len(DISCOVERY)


@pytest.mark.stack
def test_a_site_with_a_broken_tool_is_added_with_a_warning(client, plugin_sites):
    _, headers = signed_up(client)
    site = plugin_sites("drupal-ai-connect-1.0.0.json")
    base = site.manifest

    def with_broken_tool(s):
        document = base(s)
        document["tools"].append({"name": "broken", "description": "d", "input_schema": {"type": "object", "properties": {"a": {"type": "nope"}}}})
        return document

    site.manifest = with_broken_tool
    response = add(client, headers, site.origin, token="plugin-token")
    assert response.status_code == 201, response.text
    assert [tool["name"] for tool in response.json()["tools"]] == site.tool_names
    (warning,) = response.json()["warnings"]
    assert warning["tool"] == "broken" and "input_schema.properties.a.type" in warning["message"]
    assert client.get(f"/vault/sites/{response.json()['id']}", headers=headers).json()["warnings"] == [warning]


def deep_schema(levels):
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.stack
@pytest.mark.parametrize(
    "manifest",
    [
        b'{"name": "n", "version": "1", "tools": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"name": "n", "version": NaN, "server": {"url": "https://a.example"}, "tools": []}',
        {"name": "n", "version": "1", "server": {"url": "https://a.example"}, "tools": [{"name": "t", "input_schema": deep_schema(500)}]},
        {"name": "n", "version": "1", "server": {"url": "https://a.example"}, "tools": [{"name": f"t{i}", "input_schema": {"maxLength": 1e300}} for i in range(300)]},
        {"name": "n", "version": "1", "server": {"url": "https://a.example"}, "tools": [{"name": "t", "input_schema": {"properties": {"a": {"$ref": "http://169.254.169.254/latest"}}}}]},
        {"name": "n", "version": 1e300, "server": {"url": "https://a.example"}, "tools": [{"name": "t", "input_schema": {"minimum": 10**30}}]},
    ],
    ids=["deep-json", "nan", "deep-schema", "absurd-numbers", "remote-ref", "huge-version"],
)
def test_hostile_manifests_are_manifest_invalid(client, plugin_sites, manifest):
    _, headers = signed_up(client)
    site = TestSite(manifest=manifest)
    try:
        response = add(client, headers, site.origin)
        assert_error(response, 422, "MANIFEST_INVALID")
        assert response.json()["details"]
        # Nothing the manifest named was fetched: only discovery's GETs.
        assert site.requests and all(r.method == "GET" and r.path in DISCOVERY for r in site.requests)
    finally:
        site.close()


# --- the plugins' out-of-band OAuth, end to end -------------------------------------------------

OOB = "urn:ietf:wg:oauth:2.0:oob"


@pytest.fixture
def oob_site(plugin_sites):
    site = plugin_sites("xenforo-ai-connect-1.2.27.json")
    oauth = OobOAuthPlugin(site, {"claude-ai": "Claude AI", "conduit-forum": "Conduit"})
    return site, oauth


@pytest.mark.stack
def test_out_of_band_oauth_end_to_end_with_refresh_rotation(client, oob_site):
    site, oauth = oob_site
    _, headers = signed_up(client)
    started = client.post("/vault/oauth/start", json={"url": site.origin}, headers=headers)
    assert started.status_code == 200, started.text
    body = started.json()
    assert (body["redirectUri"], body["scopes"]) == (OOB, ["read"])
    query = parse_qs(urlsplit(body["authorizationUrl"]).query)
    assert body["authorizationUrl"].startswith(f"{site.origin}/oauth.php?")
    assert query["client_id"] == ["conduit-forum"]  # the registered client that is Conduit's
    assert query["scope"] == ["read"]  # least scope: never write, delete or admin unasked
    code = oauth.authorize(body["authorizationUrl"])  # the page shows the code; the person pastes it
    completed = client.post("/vault/oauth/complete", json={"state": body["state"], "code": code}, headers=headers)
    assert completed.status_code == 201, completed.text
    assert (completed.json()["authType"], completed.json()["hasToken"]) == ("oauth2", True)
    assert oauth.exchanges == ["authorization_code"]
    prefixed = next(t["prefixedName"] for t in completed.json()["tools"] if t["name"] == "xenforo.getCurrentUser")
    session = client.post("/sessions", json={}, headers=headers).json()["sessionToken"]

    def call():
        return client.post("/chat", json={"sessionToken": session, "message": f"call {prefixed} {{}}"}, headers=headers)

    first = call()
    assert first.status_code == 200 and first.json()["toolCalls"][0]["status"] == "ok", first.text
    assert site.calls[-1].authorization == "Bearer oob-at-1"
    # The site revokes the access token: the call refreshes (rotating the refresh token) and retries.
    for round_, expected in ((1, "oob-at-2"), (2, "oob-at-3")):
        oauth.revoke_access()
        again = call()
        assert again.status_code == 200 and again.json()["toolCalls"][0]["status"] == "ok", again.text
        assert site.calls[-1].authorization == f"Bearer {expected}"
    assert oauth.exchanges == ["authorization_code", "refresh_token", "refresh_token"]
    assert oauth.spent == ["oob-rt-1", "oob-rt-2"]  # the rotated token was stored and used


@pytest.mark.stack
def test_out_of_band_oauth_scopes_and_redirects(client, oob_site):
    site, oauth = oob_site
    _, headers = signed_up(client)

    def start(**body):
        return client.post("/vault/oauth/start", json={"url": site.origin, **body}, headers=headers)

    asked = start(scopes=["read", "write", "admin"])
    assert asked.status_code == 200, asked.text
    assert parse_qs(urlsplit(asked.json()["authorizationUrl"]).query)["scope"] == ["read write admin"]
    explicit_oob = start(redirectUri=OOB)
    assert explicit_oob.status_code == 200 and explicit_oob.json()["redirectUri"] == OOB
    for bad in ("javascript:alert(1)", "data:text/html,x", "http://app.example/cb", "https://app.example/cb#frag", "not a url"):
        response = start(redirectUri=bad)
        assert_error(response, 400, "VALIDATION_ERROR")
        assert response.json()["details"][0]["field"] == "redirectUri"
    # https, but the site accepts only the out-of-band redirect.
    assert_error(start(redirectUri="https://app.example/cb"), 400, "VALIDATION_ERROR")
    unknown = start(scopes=["superuser"])
    assert_error(unknown, 400, "VALIDATION_ERROR")
    assert unknown.json()["details"][0]["field"] == "scopes"


@pytest.mark.stack
def test_a_site_that_registers_only_other_products_is_refused(client, plugin_sites):
    site = plugin_sites("wordpress-webmcp-bridge-0.5.7.json")  # registered: claude-ai, goldnat
    _, headers = signed_up(client)
    response = client.post("/vault/oauth/start", json={"url": site.origin}, headers=headers)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert "SITE_OAUTH_CLIENT_ID" in response.json()["details"][0]["message"]


def test_the_client_id_knob_carries_through_the_whole_flow(account, plugin_sites, monkeypatch):
    """SITE_OAUTH_CLIENT_ID overrides the manifest: the authorization, the code exchange and every
    later refresh present it (the stored site remembers the client its tokens belong to)."""
    from conduit.vault import site_oauth
    from conduit.platform.settings import get_settings

    site = plugin_sites("wordpress-webmcp-bridge-0.5.7-plain-permalinks.json")
    oauth = OobOAuthPlugin(site, {"claude-ai": "Claude AI", "platform-7": "Our platform"})
    monkeypatch.setenv("SITE_OAUTH_CLIENT_ID", "platform-7")
    get_settings.cache_clear()
    try:
        started = site_oauth.start(account, site.origin, None)
        assert parse_qs(urlsplit(started["authorizationUrl"]).query)["client_id"] == ["platform-7"]
        view = site_oauth.complete(account, started["state"], oauth.authorize(started["authorizationUrl"]))
    finally:
        monkeypatch.delenv("SITE_OAUTH_CLIENT_ID")
        get_settings.cache_clear()
    stored = SitesRepository().get_site(account.account_id, view["id"])
    assert stored["clientId"] == "platform-7"
    oauth.revoke_access()
    assert call_tool(stored, "wordpress.getCurrentUser", {})["tool"] == "wordpress.getCurrentUser"
    assert oauth.exchanges == ["authorization_code", "refresh_token"]
    assert site.calls[-1].authorization == "Bearer oob-at-2"
