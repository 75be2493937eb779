"""Conduit as an MCP server (API.md §12.2): POST /mcp through the local stack.

The official Python SDK (`mcp`, a test dependency only) connects in both protocol modes;
raw JSON-RPC over httpx covers what a well-behaved SDK never sends.
"""

from __future__ import annotations

import asyncio
import json

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conduit.mcp import server as mcp_server
from tests.helpers import assert_error, bearer
from tests.sites import TestSite, rest_manifest, tool
from tests.test_workspaces import person, team  # noqa: F401 - fixture

pytestmark = pytest.mark.stack

MODERN = "2026-07-28"


def echo_tool(site, path, headers, body):
    return 200, {"received": json.loads(body), "authorization": headers.get("authorization")}


@pytest.fixture
def site():
    test_site = TestSite(
        manifest=lambda s: rest_manifest(s, tools=[tool("search", q={"type": "string", "minLength": 1})]),
        routes={("POST", "/tools/search"): echo_tool},
    )
    yield test_site
    test_site.close()


@pytest.fixture
def setup(client, site):
    """A user with a site in the vault, an active agent, an inactive one, and an API key."""
    someone = person(client)
    headers = someone["headers"]
    connected = client.post("/vault/sites", json={"url": site.origin, "token": "site-token"}, headers=headers)
    assert connected.status_code == 201, connected.text
    agent = client.post("/agents", json={"name": "Daily Digest", "systemPrompt": "Summarise"}, headers=headers)
    assert agent.status_code == 201, agent.text
    idle = client.post("/agents", json={"name": "Idle", "systemPrompt": "x", "isActive": False}, headers=headers)
    assert idle.status_code == 201, idle.text
    key = client.post("/api-keys", json={"name": "mcp"}, headers=headers).json()
    return {
        **someone,
        "site": connected.json(),
        "tool": connected.json()["tools"][0]["prefixedName"],
        "agent": agent.json(),
        "key": key,
    }


def sdk(url: str, key: str, mode: str, session):
    """Run `session(client)` in an SDK client connected to `url` with the API key."""

    async def main():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
            async with Client(streamable_http_client(url, http_client=http), mode=mode) as connected:
                return connected.protocol_version, await session(connected)

    return asyncio.run(main())


def rpc(client, key, method, params=None, *, version=MODERN, headers=None, request_id=1):
    """One raw JSON-RPC POST in the modern form (or the handshake-era form with version=None)."""
    params = dict(params or {})
    sent = {"Accept": "application/json, text/event-stream", **bearer(key)}
    if version == MODERN:
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        sent |= {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
        if method == "tools/call":
            sent["Mcp-Name"] = params.get("name", "")
    elif version is not None:
        sent["MCP-Protocol-Version"] = version
    sent |= headers or {}
    return client.post("/mcp", json={"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}, headers=sent)


def credits(client, headers):
    return client.get("/auth/me", headers=headers).json()["account"]["credits"]


# --- the SDK, both generations ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_sdk_lists_and_calls_a_vault_tool(local_stack, client, site, setup, mode):
    before = credits(client, setup["headers"])

    async def session(connected):
        listed = await connected.list_tools()
        result = await connected.call_tool(setup["tool"], {"q": "lamps"})
        return listed, result

    version, (listed, result) = sdk(f"{local_stack.url}/mcp", setup["key"]["key"], mode, session)
    assert version == (MODERN if mode == "auto" else "2025-11-25")
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == {setup["tool"], "agent_daily_digest"}  # the inactive agent is not a tool
    assert tools[setup["tool"]].input_schema == setup["site"]["tools"][0]["inputSchema"]  # chat's schema
    assert result.is_error is False
    expected = {"received": {"q": "lamps"}, "authorization": "Bearer site-token"}
    assert result.structured_content == expected and json.loads(result.content[0].text) == expected
    (request,) = [r for r in site.requests if r.path == "/tools/search"]
    assert json.loads(request.body) == {"q": "lamps"}
    assert credits(client, setup["headers"]) == before - 1  # what the same call costs in chat


def test_the_sdk_runs_an_agent_tool(local_stack, client, setup):
    async def session(connected):
        return await connected.call_tool("agent_daily_digest", {"input": {"topic": "lamps"}})

    _, result = sdk(f"{local_stack.url}/mcp", setup["key"]["key"], "auto", session)
    assert result.is_error is False, result
    run_id = result.structured_content["runId"]
    run = client.get(f"/runs/{run_id}", headers=setup["headers"]).json()
    assert (run["status"], run["trigger"], run["input"]) == ("succeeded", "mcp", {"topic": "lamps"})
    assert result.structured_content == {"runId": run_id, "status": "succeeded", "output": run["output"]}


# --- authentication ----------------------------------------------------------------------------


def test_without_an_api_key_the_challenge_names_the_resource_metadata(local_stack, client, setup):
    challenge = f'Bearer resource_metadata="{local_stack.url}/.well-known/oauth-protected-resource/mcp"'
    access_token = setup["headers"]["Authorization"].removeprefix("Bearer ")
    for headers, code in (({}, "UNAUTHORIZED"), (bearer(access_token), "INVALID_TOKEN"), (bearer("cdk_nonsense"), "INVALID_TOKEN")):
        answer = client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == challenge
        assert answer.json()["error"]["data"]["code"] == code
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        document = client.get(path).json()
        assert document["resource"] == f"{local_stack.url}/mcp"
        assert document["authorization_servers"] == [local_stack.url]


def test_the_api_key_is_bound_to_its_maker_and_revocation_is_immediate(client, setup):
    key = setup["key"]["key"]
    assert rpc(client, key, "tools/list").status_code == 200
    assert client.delete(f"/api-keys/{setup['key']['id']}", headers=setup["headers"]).status_code == 204
    revoked = rpc(client, key, "tools/list")  # the very next request of the same client
    assert revoked.status_code == 401 and revoked.json()["error"]["data"]["code"] == "TOKEN_REVOKED"


def test_a_viewer_key_lists_but_cannot_call(client, team, site):  # noqa: F811
    workspace_id, people = team
    owner, viewer = people["owner"], people["viewer"]
    added = client.post("/vault/sites", json={"url": site.origin, "token": "t", "workspaceId": workspace_id}, headers=owner["headers"])
    assert added.status_code == 201, added.text
    name = added.json()["tools"][0]["prefixedName"]
    key = client.post("/api-keys", json={"name": "v", "workspaceId": workspace_id}, headers=viewer["headers"]).json()["key"]
    listed = rpc(client, key, "tools/list").json()["result"]["tools"]
    assert [t["name"] for t in listed] == [name]
    called = rpc(client, key, "tools/call", {"name": name, "arguments": {"q": "x"}}).json()["result"]
    assert called["isError"] is True and called["structuredContent"]["code"] == "PERMISSION_DENIED"
    assert not [r for r in site.requests if r.path == "/tools/search"]


# --- tool failures are results ---------------------------------------------------------------------


def test_tool_failures_are_is_error_results(client, setup, site):
    key = setup["key"]["key"]
    bad = rpc(client, key, "tools/call", {"name": setup["tool"], "arguments": {"q": ""}}).json()["result"]
    assert bad["isError"] is True and bad["structuredContent"]["code"] == "VALIDATION_ERROR"
    site.routes[("POST", "/tools/search")] = lambda s, p, h, b: (500, {"error": "boom"})
    failed = rpc(client, key, "tools/call", {"name": setup["tool"], "arguments": {"q": "x"}}).json()["result"]
    assert failed["isError"] is True and failed["structuredContent"]["code"] == "TOOL_EXECUTION_ERROR"
    stray = rpc(client, key, "tools/call", {"name": "agent_daily_digest", "arguments": {"stray": 1}}).json()["result"]
    assert stray["isError"] is True and stray["structuredContent"]["code"] == "VALIDATION_ERROR"
    assert client.get(f"/agents/{setup['agent']['id']}/runs", headers=setup["headers"]).json()["items"] == []
    unknown = rpc(client, key, "tools/call", {"name": "nope", "arguments": {}})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == -32602


def test_the_outgoing_limit_holds(client, setup):
    key = setup["key"]["key"]
    from tests.helpers import wait_for_room_in_the_minute

    wait_for_room_in_the_minute(30)
    results = [rpc(client, key, "tools/call", {"name": setup["tool"], "arguments": {"q": "x"}}).json()["result"] for _ in range(11)]
    assert [r["isError"] for r in results] == [False] * 10 + [True]
    assert results[-1]["structuredContent"]["code"] == "OUTGOING_RATE_LIMITED"


# --- the protocol, both generations, and bad input -----------------------------------------------------


def test_handshake_era_initialize_holds_no_session(client, setup):
    key = setup["key"]["key"]
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "old", "version": "1"}}
    answer = rpc(client, key, "initialize", params, version=None)
    assert answer.status_code == 200 and "mcp-session-id" not in answer.headers
    assert answer.json()["result"]["protocolVersion"] == "2025-06-18"
    notified = client.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=bearer(key))
    assert notified.status_code == 202 and notified.content == b""
    listed = rpc(client, key, "tools/list", version="2025-06-18")
    assert listed.status_code == 200 and "resultType" not in listed.json()["result"]
    assert rpc(client, key, "initialize", {**params, "protocolVersion": "1999-01-01"}, version=None).json()["result"]["protocolVersion"] == "2025-11-25"


def test_modern_discover_and_results(client, setup):
    answer = rpc(client, setup["key"]["key"], "server/discover")
    assert answer.status_code == 200
    result = answer.json()["result"]
    assert result["resultType"] == "complete" and MODERN in result["supportedVersions"] and "2025-03-26" in result["supportedVersions"]
    assert rpc(client, setup["key"]["key"], "tools/list").json()["result"]["resultType"] == "complete"


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        (lambda c, k: c.post("/mcp", content=b"{not json", headers={**bearer(k), "Content-Type": "application/json"}), 400, -32700),
        (lambda c, k: c.post("/mcp", json=[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}], headers=bearer(k)), 400, -32600),
        (lambda c, k: c.post("/mcp", json={"id": 1, "method": "tools/list"}, headers=bearer(k)), 400, -32600),
        (lambda c, k: c.post("/mcp", json={"jsonrpc": "2.0", "id": None, "method": "tools/list"}, headers=bearer(k)), 400, -32600),
        (lambda c, k: c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1]}, headers=bearer(k)), 400, -32602),
        (lambda c, k: rpc(c, k, "resources/list"), 404, -32601),
        (lambda c, k: rpc(c, k, "resources/list", version="2025-06-18"), 200, -32601),
        (lambda c, k: rpc(c, k, "tools/list", version="2024-01-01"), 400, -32022),
        (lambda c, k: rpc(c, k, "tools/list", version=MODERN, headers={"MCP-Protocol-Version": "2025-06-18"}), 400, -32020),
        (lambda c, k: rpc(c, k, "tools/list", version=MODERN, headers={"Mcp-Method": "tools/call"}), 400, -32020),
        (lambda c, k: rpc(c, k, "tools/call", {"name": "a", "arguments": {}}, headers={"Mcp-Name": "b"}), 400, -32020),
        (lambda c, k: rpc(c, k, "tools/list", version=None, headers={"MCP-Protocol-Version": MODERN}), 400, -32020),
        (lambda c, k: rpc(c, k, "tools/call", {"name": "x", "arguments": {"q": "a" * 300_000}}), 400, 400),
    ],
    ids=["parse", "batch", "no-jsonrpc", "null-id", "params-array", "unknown-modern", "unknown-legacy", "version", "header-version", "header-method", "header-name", "modern-header-no-meta", "huge"],
)
def test_bad_input_is_a_json_rpc_error_and_changes_nothing(client, setup, site, send, status, code):
    before = credits(client, setup["headers"])
    answer = send(client, setup["key"]["key"])
    assert answer.status_code == status, answer.text
    assert answer.json()["jsonrpc"] == "2.0" and answer.json()["error"]["code"] == code
    assert credits(client, setup["headers"]) == before
    assert not [r for r in site.requests if r.path == "/tools/search"]


def test_get_and_delete_are_405(client, setup):
    for method in ("GET", "DELETE"):
        answer = client.request(method, "/mcp", headers=bearer(setup["key"]["key"]))
        assert answer.status_code == 405 and answer.headers["allow"] == "POST"


def test_an_access_token_still_works_on_rest_and_a_key_too(client, setup):
    key_headers = bearer(setup["key"]["key"])
    assert client.get("/vault/sites", headers=key_headers).status_code == 200
    assert_error(client.post("/api-keys", json={"name": "x"}, headers=key_headers), 403, "PERMISSION_DENIED")


# --- in-process: rules that need no stack ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [("Daily Digest", "agent_daily_digest"), ("Ünïcode!!", "agent_n_code"), ("***", "agent_unnamed")])
def test_agent_tool_names(name, expected):
    assert mcp_server.agent_tool_name(name) == expected


def test_a_base64_mcp_name_header_is_decoded():
    assert mcp_server._decode_header_value("=?base64?SGVsbG8sIOS4lueVjA==?=") == "Hello, 世界"
    assert mcp_server._decode_header_value("=?base64?%%%?=") is None
    assert mcp_server._decode_header_value("plain") == "plain"



def test_an_agent_tool_whose_run_outlasts_the_wait_answers_with_its_run_id(aws, template, monkeypatch):
    """Past the wait (60 s; shortened here) a call of an agent tool ends with the run's id and
    status `running`, not an error: the run goes on (in-process: moto's Step Functions never
    runs the execution, so the run stays running)."""
    from conduit.agents import definitions as agents
    from conduit.repositories.accounts import AccountsRepository
    from conduit.repositories.runs import RunsRepository
    from conduit.platform.settings import get_settings

    from .helpers import open_account

    agents_function = next(spec for spec in template.functions() if spec.logical_id == "AgentsFunction")
    monkeypatch.setenv("RUN_STATE_MACHINE_ARN", agents_function.environment["RUN_STATE_MACHINE_ARN"])
    get_settings.cache_clear()
    monkeypatch.setattr(mcp_server, "AGENT_WAIT_SECONDS", 0.3)
    monkeypatch.setattr(mcp_server, "AGENT_POLL_SECONDS", 0.05)
    account = AccountsRepository().get(open_account())
    agent = agents.create_agent(account, {"name": "Slow", "systemPrompt": "wait", "model": "local:echo", "triggerType": "manual"})
    result = mcp_server._run_agent(account, agents.find_agent(account, agent["id"]), {"task": "long"})
    run_id = result["structuredContent"]["runId"]
    assert result["isError"] is False and result["structuredContent"] == {"runId": run_id, "status": "running"}
    assert f"Run {run_id} is still running" in result["content"][0]["text"]
    assert RunsRepository().find(run_id)["status"] == "running"
