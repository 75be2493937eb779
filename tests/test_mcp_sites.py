"""Remote MCP servers as vault sites (API.md §12.1), against real servers built with the official
Python SDK (tests/mcp_servers.py) and small hostile ones; in process (moto), then through the stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conduit.identity import login as identity

from conduit.vault import mcp_sites

from conduit.vault import site_oauth

from conduit.vault import sites as vault
from conduit.platform.errors import ConduitError
from conduit.vault.mcp_client import MODERN_VERSION, McpClient, McpFailure
from conduit.net.outbound import GuardedClient
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.sites import SitesRepository
from conduit.vault.tool_calls import call_tool

from .helpers import assert_error, signed_up
from .mcp_servers import HostileServer, McpAuthorizationServer, McpTestServer, _free_port, rpc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def servers():
    created: list = []

    def make(kind=McpTestServer, *args, **options):
        server = kind(*args, **options)
        created.append(server)
        return server

    yield make
    for server in created:
        server.close()


@pytest.fixture
def account(aws):
    session = identity.register(f"mcp{time.monotonic_ns()}@example.com", "long password", None)
    return AccountsRepository().get(session.user.id)


@pytest.fixture
def short_timeouts(monkeypatch):
    monkeypatch.setattr(mcp_sites, "PROBE_SECONDS", 1.0)
    monkeypatch.setattr(vault, "FETCH_SECONDS", 1.0)


def stored(account, site_id):
    return SitesRepository().get_site(account.account_id, site_id)


def nothing_stored(account):
    return SitesRepository().list_sites(account.account_id, 10, None).items == []


def expect_error(code, call, *args, **kwargs) -> ConduitError:
    with pytest.raises(ConduitError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value
    return caught.value


# --- the protocol generations, against the SDK ---------------------------------------------------


def test_stateless_json_server_speaks_the_modern_revision(account, servers):
    server = servers(stateless=True, json_response=True)
    view = vault.add_site(account, server.url, None, None)
    assert view["kind"] == "mcp" and view["authType"] == "none" and view["name"] == "Loopback tools"
    assert view["version"] == "3.1.4" and view["description"] == "Tools for tests."
    tools = {tool["name"]: tool for tool in view["tools"]}
    assert sorted(tools) == ["add", "crash", "echo", "fail"]
    assert tools["echo"]["annotations"] == {"readOnlyHint": True, "destructiveHint": False}
    assert tools["add"]["annotations"] == {"destructiveHint": True}
    assert tools["add"]["prefixedName"] == f"127_0_0_1_{server.port}_add"
    assert tools["add"]["inputSchema"]["required"] == ["a", "b"]
    site = stored(account, view["id"])
    assert site["mcpProtocolVersion"] == MODERN_VERSION
    # Looked up as a manifest first (a GET), then probed; modern: no handshake, no session.
    assert server.methods() == ["GET", "server/discover", "tools/list"]

    server.seen.clear()
    assert call_tool(site, "add", {"a": 2, "b": 40}) == {"total": 42}  # structuredContent preferred
    assert call_tool(site, tools["echo"]["prefixedName"], {"text": "hi"}) == {"result": "echo: hi"}  # the SDK wraps a str result as structuredContent
    # The stored version is used: no probe before a call; the modern headers go with it.
    assert server.methods() == ["tools/call", "tools/call"]
    headers = server.seen[0].headers
    assert (headers["mcp-protocol-version"], headers["mcp-method"], headers["mcp-name"]) == (MODERN_VERSION, "tools/call", "add")
    assert "mcp-session-id" not in headers


def test_stateful_sse_server_of_the_handshake_era(account, servers):
    server = servers(stateless=False, json_response=False, handshake_only=True)
    view = vault.add_site(account, server.url, None, None)
    site = stored(account, view["id"])
    assert site["kind"] == "mcp" and site["mcpProtocolVersion"] == "2025-11-25"
    # The modern form was tried first and refused; then the handshake.
    assert server.methods()[:5] == ["GET", "server/discover", "initialize", "notifications/initialized", "tools/list"]

    server.seen.clear()
    assert call_tool(site, "add", {"a": 1, "b": 2}) == {"total": 3}
    # Each invocation opens its own session (nothing held between Lambda invocations) and ends it.
    assert server.methods() == ["initialize", "notifications/initialized", "tools/call", "DELETE"]
    session_id = server.seen[1].headers["mcp-session-id"]
    assert server.seen[2].headers["mcp-session-id"] == session_id and server.seen[3].headers["mcp-session-id"] == session_id
    assert server.seen[2].headers["mcp-protocol-version"] == "2025-11-25"


def test_a_tool_that_reports_is_error_is_a_tool_execution_error(account, servers):
    server = servers()
    site = stored(account, vault.add_site(account, server.url, None, None)["id"])
    error = expect_error("TOOL_EXECUTION_ERROR", call_tool, site, "fail", {"reason": "no stock"})
    assert error.status == 502 and "refused: no stock" in error.message


def test_arguments_are_checked_before_anything_is_sent(account, servers):
    server = servers()
    site = stored(account, vault.add_site(account, server.url, None, None)["id"])
    server.seen.clear()
    expect_error("VALIDATION_ERROR", call_tool, site, "add", {"a": "two"})
    assert server.seen == []


def test_bearer_token_server(account, servers):
    server = servers(bearer="s3cret")
    error = expect_error("MANIFEST_NOT_FOUND", vault.add_site, account, server.url, None, None)
    assert "401" in error.message and nothing_stored(account)
    view = vault.add_site(account, server.url, "Bearer s3cret", None)
    assert view["hasToken"] and view["authType"] == "bearer" and view["kind"] == "mcp"
    site = stored(account, view["id"])
    server.seen.clear()
    assert call_tool(site, "echo", {"text": "x"}) == {"result": "echo: x"}
    assert [s.headers["authorization"] for s in server.seen] == ["Bearer s3cret"]
    # A token the server no longer takes (and nothing to refresh it with): a clear failure.
    server.bearer = "rotated"
    error = expect_error("TOOL_EXECUTION_ERROR", call_tool, site, "echo", {"text": "x"})
    assert "401" in error.message


def test_refresh_lists_again(account, servers):
    server = servers()
    view = vault.add_site(account, server.url, None, None)

    @server.mcp.tool()
    def later(word: str) -> str:
        """Added after the site was connected."""
        return word

    refreshed = vault.refresh_manifest(account, view["id"])
    assert "later" in [tool["name"] for tool in refreshed["tools"]] and refreshed["kind"] == "mcp"


def test_every_page_of_tools_list(account, servers):
    pages = {None: (["a", "b"], "p2"), "p2": (["c"], "p3"), "p3": (["d"], None)}

    def answer(message):
        if message.get("method") != "tools/list":
            return rpc(message, {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "Pager", "version": "1"}})
        names, cursor = pages[(message.get("params") or {}).get("cursor")]
        tools = [{"name": n, "inputSchema": {"type": "object"}} for n in names]
        return rpc(message, {"tools": tools, **({"nextCursor": cursor} if cursor else {})})

    server = servers(HostileServer, answer)
    view = vault.add_site(account, server.url, None, None)
    assert [tool["name"] for tool in view["tools"]] == ["a", "b", "c", "d"]
    assert [tool["description"] for tool in view["tools"]] == ["a", "b", "c", "d"]  # tolerant: name describes


def test_an_expired_session_is_initialized_again_once(servers):
    sessions = iter(["s1", "s2"])
    calls = []

    def answer(message):
        method = message.get("method")
        calls.append(method)
        if method == "initialize":
            status, headers, body = rpc(message, {"protocolVersion": "2025-03-26", "capabilities": {}, "serverInfo": {"name": "S", "version": "1"}})
            return status, {**headers, "Mcp-Session-Id": next(sessions)}, body
        if method == "notifications/initialized":
            return 202, {}, b""
        if calls.count("tools/call") == 1:
            return 404, {"Content-Type": "application/json"}, b'{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}'
        return rpc(message, {"content": [{"type": "text", "text": "ok"}]})

    server = servers(HostileServer, answer)
    client = McpClient(server.url, GuardedClient(allow_loopback=True), protocol_version="2025-03-26")
    assert client.call_tool("t", {}) == {"content": [{"type": "text", "text": "ok"}]}
    assert calls == ["initialize", "notifications/initialized", "tools/call"] * 2
    assert [r["headers"].get("mcp-session-id") for r in server.requests] == [None, "s1", "s1", None, "s2", "s2"]


def test_a_server_that_dies_mid_call(account, servers):
    process = subprocess.Popen([sys.executable, "-m", "tests.mcp_servers"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        deadline = time.monotonic() + 30
        while True:
            try:
                view = vault.add_site(account, url, None, None)
                break
            except ConduitError:
                assert time.monotonic() < deadline, "the server process did not start"
                time.sleep(0.2)
        site = stored(account, view["id"])
        error = expect_error("SITE_UNAVAILABLE", call_tool, site, "crash", {})
        assert "could not be reached" in error.message
        assert process.wait(timeout=10) == 3  # it really died in the call
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


EVERYTHING = ROOT / "tests" / "npm" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"


def test_a_second_implementation_the_typescript_sdk(account, tmp_path):
    """@modelcontextprotocol/server-everything (TypeScript SDK, handshake era, SSE answers with
    priming events). Installed by `npm ci --prefix tests/npm`; skipped without node or the package."""
    node = shutil.which("node")
    if node is None or not EVERYTHING.exists():
        pytest.skip("node or tests/npm (npm ci --prefix tests/npm) is missing")
    port = _free_port()
    log = (tmp_path / "everything.log").open("w")
    process = subprocess.Popen([node, str(EVERYTHING), "streamableHttp"], env={**os.environ, "PORT": str(port)},
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + 30
        while True:
            try:
                view = vault.add_site(account, url, None, None)
                break
            except ConduitError:
                assert time.monotonic() < deadline and process.poll() is None, "the node server did not start"
                time.sleep(0.3)
        site = stored(account, view["id"])
        assert site["mcpProtocolVersion"] in ("2025-11-25", MODERN_VERSION) and view["warnings"] == []
        names = {tool["name"] for tool in view["tools"]}
        assert {"echo", "get-sum", "get-tiny-image", "get-structured-content"} <= names
        assert call_tool(site, "echo", {"message": "hi"}) == {"content": "Echo: hi"}
        image = call_tool(site, "get-tiny-image", {})["content"]
        assert "[image: image/png, about" in image and "not shown]" in image  # summarised, not dropped
        assert call_tool(site, "get-sum", {"a": 2, "b": 3}) == {"content": "The sum of 2 and 3 is 5."}
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_oauth_with_dynamic_registration_resource_and_refresh_rotation(account, servers):
    authorization = servers(McpAuthorizationServer)
    server = servers(oauth=authorization)
    authorization.resource = server.url
    redirect = "http://127.0.0.1:9/callback"
    # Without a token the server challenges; adding says so and points at OAuth.
    error = expect_error("MANIFEST_NOT_FOUND", vault.add_site, account, server.url, None, None)
    assert "/vault/oauth/start" in error.message and nothing_stored(account)

    started = site_oauth.start(account, server.url, redirect)
    assert authorization.registered == [{
        "client_name": "Conduit", "redirect_uris": [redirect], "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"], "token_endpoint_auth_method": "none",
    }]
    assert started["authorizationUrl"].startswith(f"{authorization.origin}/authorize?")
    code = authorization.approve(started["authorizationUrl"])  # checks S256, client id, resource
    view = site_oauth.complete(account, started["state"], code)
    assert (view["kind"], view["authType"], view["hasToken"]) == ("mcp", "oauth2", True)
    assert authorization.exchanges[0]["resource"] == server.url and authorization.exchanges[0]["grant_type"] == "authorization_code"
    site = stored(account, view["id"])
    assert call_tool(site, "add", {"a": 1, "b": 1}) == {"total": 2}

    # The server stops taking the access token: one refresh (rotated, with `resource`), one retry.
    authorization.valid_access = set()
    assert call_tool(stored(account, view["id"]), "add", {"a": 2, "b": 2}) == {"total": 4}
    refresh = authorization.exchanges[-1]
    assert (refresh["grant_type"], refresh["refresh_token"], refresh["resource"]) == ("refresh_token", "mcp-rt-1", server.url)
    assert call_tool(stored(account, view["id"]), "add", {"a": 3, "b": 3}) == {"total": 6}  # the rotated token is stored
    assert len(authorization.exchanges) == 2


def test_oauth_refuses_an_authorization_server_that_names_another_issuer(account, servers):
    authorization = servers(McpAuthorizationServer, issuer_override="https://evil.example")
    server = servers(oauth=authorization)
    authorization.resource = server.url
    error = expect_error("MANIFEST_INVALID", site_oauth.start, account, server.url, "http://127.0.0.1:9/callback")
    assert "issuer" in error.message and authorization.registered == []


def test_oauth_refuses_metadata_about_another_resource(account, servers):
    authorization = servers(McpAuthorizationServer)
    server = servers(oauth=authorization)
    authorization.resource = "http://127.0.0.1:1/elsewhere"
    error = expect_error("MANIFEST_INVALID", site_oauth.start, account, server.url, "http://127.0.0.1:9/callback")
    assert "not " + server.url in error.message


# --- hostile servers: a clear error, nothing stored, no 500 --------------------------------------


def _forever(message):
    def stream():
        yield b"retry: 1000\n\n"
        while True:
            yield b": still here\n\n"
            time.sleep(0.05)

    return 200, {"Content-Type": "text/event-stream"}, stream()


def _huge(message):
    def stream():
        chunk = b"x" * 65536
        for _ in range(1600):  # 100 MB, never all sent: the cap stops reading
            yield chunk

    return 200, {"Content-Type": "application/json"}, stream()


def _deep(message):
    return 200, {"Content-Type": "application/json"}, b'{"jsonrpc":"2.0","id":%d,"result":' % message.get("id", 0) + b"[" * 10_000 + b"]" * 10_000 + b"}"


def _liar(message):
    if message.get("method") == "server/discover":
        return 404, {}, b""
    return rpc(message, {"protocolVersion": "1999-01-01", "capabilities": {}, "serverInfo": {"name": "Liar", "version": "1"}})


def _garbage(message):
    return 200, {"Content-Type": "text/html"}, b"<html>hello</html>"


def _silent(message):
    time.sleep(3)
    return 200, {"Content-Type": "application/json"}, b"{}"


def _private_redirect(message):
    return 307, {"Location": "https://169.254.169.254/mcp", "Content-Length": "0"}, b""


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (_forever, "MANIFEST_NOT_FOUND", "in time"),
        (_huge, "MANIFEST_INVALID", "larger than"),
        (_deep, "MANIFEST_INVALID", "nested"),
        (_liar, "MANIFEST_INVALID", "unsupported protocol version (1999-01-01)"),
        (_garbage, "MANIFEST_NOT_FOUND", "No manifest found"),
        (_silent, "MANIFEST_NOT_FOUND", "in time"),
        (_private_redirect, "INVALID_URL", "refused address (cloud metadata)"),
    ],
    ids=["streams-forever", "100MB", "10000-deep", "lies-about-version", "garbage", "never-answers", "redirects-private"],
)
def test_hostile_servers_when_added(account, servers, short_timeouts, answer, code, words):
    server = servers(HostileServer, answer)
    error = expect_error(code, vault.add_site, account, server.url, None, None)
    assert words in error.message, error.message
    assert nothing_stored(account)


@pytest.mark.parametrize(
    ("answer", "code"),
    [(_forever, "SITE_UNAVAILABLE"), (_huge, "TOOL_EXECUTION_ERROR"), (_deep, "TOOL_EXECUTION_ERROR"),
     (_garbage, "TOOL_EXECUTION_ERROR"), (_private_redirect, "SITE_UNAVAILABLE")],
    ids=["streams-forever", "100MB", "10000-deep", "garbage", "redirects-private"],
)
def test_hostile_answers_to_a_call(account, servers, answer, code):
    good = servers()
    site = stored(account, vault.add_site(account, good.url, None, None)["id"])
    hostile = servers(HostileServer, answer)
    site = {**site, "callTarget": hostile.url}  # the server turned hostile after it was added
    expect_error(code, call_tool, site, "echo", {"text": "x"}, client=GuardedClient(timeout=1.0))


def test_json_rpc_errors_are_mapped(account, servers):
    def answer(message):
        if message.get("method") == "tools/call":
            return 200, {"Content-Type": "application/json"}, json.dumps(
                {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32602, "message": "Unknown tool: echo"}}).encode()
        if message.get("method") == "server/discover":
            return rpc(message, {"supportedVersions": [MODERN_VERSION], "capabilities": {"tools": {}}})
        return rpc(message, {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]})

    server = servers(HostileServer, answer)
    site = stored(account, vault.add_site(account, server.url, None, None)["id"])
    error = expect_error("TOOL_EXECUTION_ERROR", call_tool, site, "echo", {})
    assert "refused the arguments" in error.message and "Unknown tool: echo" in error.message
    assert error.details == [{"field": "jsonrpc", "message": "code -32602"}]


# --- results --------------------------------------------------------------------------------------


def test_content_blocks_are_text_and_summaries():
    site = {"domain": "example.com"}
    result = {"content": [
        {"type": "text", "text": "first"},
        {"type": "image", "mimeType": "image/png", "data": "aGVsbG8gd29ybGQ="},
        {"type": "resource", "resource": {"uri": "file:///a.txt", "text": "inside"}},
        {"type": "resource", "resource": {"uri": "file:///b.bin", "mimeType": "application/pdf", "blob": "AAAA"}},
        {"type": "resource_link", "uri": "https://example.com/x", "name": "x"},
        {"type": "audio", "mimeType": "audio/wav", "data": "AAAA"},
    ]}
    text = mcp_sites.tool_result(result, site, "t")["content"]
    assert text.split("\n") == [
        "first",
        "[image: image/png, about 12 bytes, not shown]",
        "[resource file:///a.txt]",
        "inside",
        "[resource file:///b.bin (application/pdf), not shown]",
        "[resource link https://example.com/x: x]",
        "[audio: audio/wav, about 3 bytes, not shown]",
    ]
    assert mcp_sites.tool_result({"content": [], "structuredContent": {"n": 1}}, site, "t") == {"n": 1}


def test_old_items_read_as_manifest_sites():
    assert mcp_sites.site_kind({}) == "manifest" and mcp_sites.site_kind({"kind": "mcp"}) == "mcp"


def test_no_mcp_sdk_at_run_time():
    code = "import sys; sys.path.insert(0, 'layers/conduit'); import conduit.vault.tool_calls, conduit.vault.sites; print('mcp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_failures_carry_their_kind():
    failure = McpFailure("rpc", "x", rpc_code=-32601)
    assert (failure.kind, failure.rpc_code) == ("rpc", -32601)


# --- through the stack ----------------------------------------------------------------------------


def _wait_out_the_minute(response, retry):
    while response.status_code == 429:
        time.sleep(int(response.headers["Retry-After"]))
        response = retry()
    return response


@pytest.mark.stack
def test_added_listed_and_called_through_chat_and_an_agent_run(client, servers):
    _, headers = signed_up(client)
    server = servers(stateless=False, json_response=False)  # SSE answers
    added = client.post("/vault/sites", json={"url": server.url}, headers=headers)
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["kind"] == "mcp" and {t["name"] for t in body["tools"]} == {"add", "crash", "echo", "fail"}
    listed = client.get("/vault/sites", headers=headers).json()["items"]
    assert [(s["id"], s["kind"]) for s in listed] == [(body["id"], "mcp")]
    shown = client.get(f"/vault/sites/{body['id']}", headers=headers).json()
    echo = next(t for t in shown["tools"] if t["name"] == "echo")
    assert echo["annotations"]["readOnlyHint"] is True
    refreshed = client.post(f"/vault/sites/{body['id']}/refresh", headers=headers)
    assert refreshed.status_code == 200 and refreshed.json()["kind"] == "mcp"

    session = client.post("/sessions", json={}, headers=headers).json()["sessionToken"]

    def send():
        message = f'call {echo["prefixedName"]} {{"text": "from chat"}}'
        return client.post("/chat", json={"sessionToken": session, "message": message}, headers=headers)

    chat = _wait_out_the_minute(send(), send)
    assert chat.status_code == 200, chat.text
    (call,) = chat.json()["toolCalls"]
    assert (call["tool"], call["status"]) == (echo["prefixedName"], "ok")
    assert "echo: from chat" in chat.json()["message"]["content"]

    add = next(t for t in shown["tools"] if t["name"] == "add")
    agent = client.post("/agents", json={"name": "MCP agent", "systemPrompt": f'call {add["prefixedName"]} {{"a": 20, "b": 22}}'}, headers=headers)
    assert agent.status_code == 201, agent.text

    def start():
        return client.post(f"/agents/{agent.json()['id']}/runs", json={}, headers=headers)

    started = _wait_out_the_minute(start(), start)
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
    assert (tool_step["tool"], tool_step["status"]) == (add["prefixedName"], "ok")
    calls = [s.body for s in server.seen if isinstance(s.body, dict) and s.body.get("method") == "tools/call"]
    assert [c["params"]["name"] for c in calls] == ["echo", "add"]
    assert calls[1]["params"]["arguments"] == {"a": 20, "b": 22}


@pytest.mark.stack
def test_is_error_through_chat_and_hostile_add_through_the_stack(client, servers):
    _, headers = signed_up(client)
    server = servers()
    body = client.post("/vault/sites", json={"url": server.url}, headers=headers).json()
    fail = next(t for t in body["tools"] if t["name"] == "fail")
    session = client.post("/sessions", json={}, headers=headers).json()["sessionToken"]

    def send():
        return client.post("/chat", json={"sessionToken": session, "message": f'call {fail["prefixedName"]} {{"reason": "closed"}}'}, headers=headers)

    chat = _wait_out_the_minute(send(), send)
    assert_error(chat, 502, "TOOL_EXECUTION_ERROR")
    assert "refused: closed" in chat.json()["error"]

    liar = servers(HostileServer, _liar)
    assert_error(client.post("/vault/sites", json={"url": liar.url}, headers=headers), 422, "MANIFEST_INVALID")
    assert len(client.get("/vault/sites", headers=headers).json()["items"]) == 1
