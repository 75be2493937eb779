"""Conduit's OAuth 2.1 authorization server for /mcp (API.md §12.2).

The rules of redirect URIs in-process; every flow through the local stack, as a client and a
person (with an HTTP client parsing the consent page's forms; the real browser and the SDK's
OAuth provider are in tests/test_oauth_browser.py).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers import assert_error, bearer
from tests.test_mcp import MODERN, rpc, setup, site  # noqa: F401 - fixtures
from tests.test_workspaces import person, team  # noqa: F401 - fixture

PASSWORD = "correct horse battery"
REDIRECT = "http://127.0.0.1:9/callback"


# --- rules, in-process -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("https://app.example.com/cb", True),
        ("http://127.0.0.1:33418/callback", True),
        ("http://[::1]/cb", True),
        ("http://localhost:8080/cb", True),
        ("http://app.example.com/cb", False),
        ("https://app.example.com/cb#frag", False),
        ("javascript:alert(1)", False),
        ("/relative/cb", False),
        ("", False),
        (42, False),
    ],
)
def test_which_redirect_uris_a_client_may_register(uri, allowed):
    from conduit.identity.oauth_server import redirect_uri_problem

    assert (redirect_uri_problem(uri) is None) is allowed


def test_a_loopback_redirect_uri_matches_any_port_and_nothing_else_does():
    from conduit.identity.oauth_server import Client

    client = Client("c", "App", ("http://127.0.0.1/callback", "https://app.example.com/cb"))
    assert client.check_redirect_uri("http://127.0.0.1:51234/callback")  # RFC 8252 §7.3
    assert client.check_redirect_uri("https://app.example.com/cb")
    assert not client.check_redirect_uri("https://app.example.com:444/cb")
    assert not client.check_redirect_uri("http://127.0.0.1:51234/other")
    assert not client.check_redirect_uri("http://127.0.0.2/callback")
    assert not client.check_redirect_uri("https://app.example.com/cb?x=1")


def test_the_metadata_is_valid_rfc_8414():
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    from conduit.identity.oauth_server import Endpoints

    document = Endpoints("https://abc.lambda-url.eu-west-1.on.aws").metadata()
    AuthorizationServerMetadata(document).validate()  # raises on any defect
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["client_id_metadata_document_supported"] is True


def test_mcp_never_imports_authlib():
    """/mcp verifies its tokens with PyJWT in the gate: Authlib (≈50 ms of import) loads only on the OAuth routes."""
    import subprocess
    import sys

    probe = "import sys; import conduit.identity.gate, conduit.mcp.server; print(any(m.startswith('authlib') for m in sys.modules))"
    root = __import__("pathlib").Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={"PYTHONPATH": str(root / "layers/conduit")}, cwd=root, check=True)
    assert out.stdout.strip() == "False"


# --- the flows, through the local stack ------------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register_client(client, redirect_uris=(REDIRECT,), name="Test Client") -> str:
    answer = client.post("/oauth/register", json={"client_name": name, "redirect_uris": list(redirect_uris)})
    assert answer.status_code == 201, answer.text
    assert answer.json()["token_endpoint_auth_method"] == "none" and "client_secret" not in answer.json()
    return answer.json()["client_id"]


def authorization_params(client, client_id, challenge, **overrides) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "tools:read tools:call agents:run",
        "state": "state-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": f"{origin(client)}/mcp",
    }
    params.update(overrides)
    return {name: value for name, value in params.items() if value is not None}


def origin(client) -> str:
    return str(client.base_url).rstrip("/")


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}


def consent(client, params, email, password=PASSWORD, account=None, action="approve"):
    """A person signs in on the page and approves (or denies): the final answer (a redirect)."""
    page = client.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    signed_in = client.post("/oauth/authorize", data={**hidden_fields(page.text), "email": email, "password": password, "action": "sign_in"})
    assert signed_in.status_code == 200 and "Allow" in signed_in.text, signed_in.text
    accounts = re.findall(r'<option value="([^"]+)"', signed_in.text)
    return client.post("/oauth/authorize", data={**hidden_fields(signed_in.text), "account": account or accounts[0], "action": action})


def code_from(answer) -> str:
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert answer.headers["location"].startswith(REDIRECT) and query["state"] == ["state-1"], answer.headers["location"]
    return query["code"][0]


def exchange(client, client_id, code, verifier, **extra):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": client_id, "code_verifier": verifier, **extra}
    return client.post("/oauth/token", data=form)


def tokens_for(client, someone, scope="tools:read tools:call agents:run", account=None) -> tuple[str, dict]:
    client_id = register_client(client)
    verifier, challenge = pkce()
    code = code_from(consent(client, authorization_params(client, client_id, challenge, scope=scope), someone["email"], account=account))
    answer = exchange(client, client_id, code, verifier)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return client_id, answer.json()


def mcp_list(client, access_token):
    return rpc(client, access_token, "tools/list")


@pytest.mark.stack
def test_the_metadata_documents(client):
    base = origin(client)
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == base
    assert metadata["authorization_endpoint"] == f"{base}/oauth/authorize"
    assert metadata["token_endpoint"] == f"{base}/oauth/token"
    assert metadata["registration_endpoint"] == f"{base}/oauth/register"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    resource = client.get("/.well-known/oauth-protected-resource/mcp").json()
    assert resource["resource"] == f"{base}/mcp" and resource["authorization_servers"] == [base]


@pytest.mark.stack
def test_a_person_grants_a_client_that_then_calls_a_vault_tool(client, setup):
    """Registration → consent page → code → tokens → tools/list and a tools/call that reaches the site."""
    _, issued = tokens_for(client, setup)
    assert issued["token_type"] == "Bearer" and issued["scope"] == "tools:read tools:call agents:run"
    listed = mcp_list(client, issued["access_token"])
    assert listed.status_code == 200, listed.text
    names = [tool["name"] for tool in listed.json()["result"]["tools"]]
    assert setup["tool"] in names and "agent_daily_digest" in names
    called = rpc(client, issued["access_token"], "tools/call", {"name": setup["tool"], "arguments": {"q": "shoes"}})
    result = called.json()["result"]
    assert result["isError"] is False and result["structuredContent"]["received"] == {"q": "shoes"}
    assert result["structuredContent"]["authorization"] == "Bearer site-token"


@pytest.mark.stack
def test_tokens_are_bound_both_ways(client, setup):
    _, issued = tokens_for(client, setup)
    assert_error(client.get("/auth/me", headers=bearer(issued["access_token"])), 401, "INVALID_TOKEN")
    assert_error(client.get("/vault/sites", headers=bearer(issued["access_token"])), 401, "INVALID_TOKEN")
    rest = rpc(client, setup["headers"]["Authorization"].removeprefix("Bearer "), "tools/list")
    assert rest.status_code == 401 and rest.json()["error"]["data"]["code"] == "INVALID_TOKEN"
    assert 'resource_metadata="' in rest.headers["www-authenticate"]


@pytest.mark.stack
def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_grant(client, setup):
    client_id, issued = tokens_for(client, setup)
    form = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"], "client_id": client_id}
    rotated = client.post("/oauth/token", data=form)
    assert rotated.status_code == 200, rotated.text
    fresh = rotated.json()
    assert fresh["refresh_token"] != issued["refresh_token"] and fresh["access_token"] != issued["access_token"]
    assert mcp_list(client, fresh["access_token"]).status_code == 200
    reused = client.post("/oauth/token", data=form)  # the rotated-out token comes back: theft assumed
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    for token in (fresh["access_token"], issued["access_token"]):
        dead = mcp_list(client, token)
        assert dead.status_code == 401 and dead.json()["error"]["data"]["code"] == "TOKEN_REVOKED"
    again = client.post("/oauth/token", data={**form, "refresh_token": fresh["refresh_token"]})
    assert again.json()["error"] == "invalid_grant"


@pytest.mark.stack
def test_a_replayed_code_is_refused_and_revokes_what_it_granted(client, setup):
    client_id = register_client(client)
    verifier, challenge = pkce()
    code = code_from(consent(client, authorization_params(client, client_id, challenge), setup["email"]))
    first = exchange(client, client_id, code, verifier)
    assert first.status_code == 200
    replay = exchange(client, client_id, code, verifier)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    assert mcp_list(client, first.json()["access_token"]).status_code == 401
    refreshed = client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"], "client_id": client_id})
    assert refreshed.json()["error"] == "invalid_grant"


@pytest.mark.stack
def test_pkce_is_required_s256_only_and_checked(client, setup):
    client_id = register_client(client)
    verifier, challenge = pkce()
    for overrides, error in (
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
    ):
        answer = client.get("/oauth/authorize", params=authorization_params(client, client_id, challenge, **overrides))
        assert answer.status_code == 302, answer.text
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        assert query["error"] == [error] and query["state"] == ["state-1"]
    code = code_from(consent(client, authorization_params(client, client_id, challenge), setup["email"]))
    wrong = exchange(client, client_id, code, pkce()[0])
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    missing = exchange(client, client_id, code_from(consent(client, authorization_params(client, client_id, challenge), setup["email"])), verifier, code_verifier="")
    assert missing.status_code == 400 and missing.json()["error"] in ("invalid_request", "invalid_grant")


@pytest.mark.stack
def test_the_resource_is_required_and_must_be_mcp(client):
    client_id = register_client(client)
    _, challenge = pkce()
    for resource in (None, "https://elsewhere.example.com/mcp", f"{origin(client)}/api"):
        answer = client.get("/oauth/authorize", params=authorization_params(client, client_id, challenge, resource=resource))
        assert answer.status_code == 302, answer.text
        assert parse_qs(urlsplit(answer.headers["location"]).query)["error"] == ["invalid_target"]


@pytest.mark.stack
def test_an_unknown_client_or_redirect_uri_never_redirects(client):
    client_id = register_client(client)
    _, challenge = pkce()
    for params in (
        authorization_params(client, client_id, challenge, redirect_uri="https://attacker.example.com/steal"),
        authorization_params(client, "mcpc_000000000000000000000000", challenge),
        authorization_params(client, client_id, challenge, redirect_uri=None),
    ):
        answer = client.get("/oauth/authorize", params=params)
        assert answer.status_code == 400 and "location" not in answer.headers, answer.headers
        assert answer.headers["content-type"].startswith("text/html") and "Nothing was shared" in answer.text


@pytest.mark.stack
def test_deny_tells_the_client_access_denied(client, setup):
    client_id = register_client(client)
    _, challenge = pkce()
    denied = consent(client, authorization_params(client, client_id, challenge), setup["email"], action="deny")
    assert denied.status_code == 302
    query = parse_qs(urlsplit(denied.headers["location"]).query)
    assert (query["error"], query["state"], "code" in query) == (["access_denied"], ["state-1"], False)


@pytest.mark.stack
def test_a_wrong_password_shows_the_page_again_and_issues_nothing(client, setup):
    client_id = register_client(client)
    _, challenge = pkce()
    page = client.get("/oauth/authorize", params=authorization_params(client, client_id, challenge))
    wrong = client.post("/oauth/authorize", data={**hidden_fields(page.text), "email": setup["email"], "password": "not it", "action": "sign_in"})
    assert wrong.status_code == 200 and "Invalid email or password" in wrong.text and "ticket" not in hidden_fields(wrong.text)
    forged = client.post("/oauth/authorize", data={**hidden_fields(page.text), "account": setup["id"], "action": "approve", "ticket": "forged"})
    assert forged.status_code == 200 and "expired" in forged.text and "location" not in forged.headers


@pytest.mark.stack
def test_a_form_without_the_browsers_csrf_cookie_is_refused(client, setup):
    client_id = register_client(client)
    _, challenge = pkce()
    page = client.get("/oauth/authorize", params=authorization_params(client, client_id, challenge))
    fields = {**hidden_fields(page.text), "email": setup["email"], "password": PASSWORD, "action": "sign_in"}
    client.cookies.clear()
    refused = client.post("/oauth/authorize", data=fields)
    assert refused.status_code == 403 and "location" not in refused.headers
    client.cookies.set("conduit_oauth_csrf", secrets.token_urlsafe(32), path="/oauth")
    assert client.post("/oauth/authorize", data=fields).status_code == 403
    assert page.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]


@pytest.mark.stack
def test_scopes_are_enforced_on_mcp(client, setup):
    _, read_only = tokens_for(client, setup, scope="tools:read")
    assert mcp_list(client, read_only["access_token"]).status_code == 200
    refused = rpc(client, read_only["access_token"], "tools/call", {"name": setup["tool"], "arguments": {"q": "x"}})
    assert refused.status_code == 403, refused.text
    assert refused.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="tools:call"'
    _, calls_only = tokens_for(client, setup, scope="tools:call")
    assert rpc(client, calls_only["access_token"], "tools/list").status_code == 403
    agent = rpc(client, calls_only["access_token"], "tools/call", {"name": "agent_daily_digest", "arguments": {}})
    assert agent.status_code == 403 and 'scope="agents:run"' in agent.headers["www-authenticate"]
    unknown = client.get("/oauth/authorize", params=authorization_params(client, register_client(client), pkce()[1], scope="admin"))
    assert parse_qs(urlsplit(unknown.headers["location"]).query)["error"] == ["invalid_scope"]


@pytest.mark.stack
def test_a_workspace_viewers_token_lists_but_cannot_call(client, team):
    workspace_id, people = team
    viewer = people["viewer"]
    _, issued = tokens_for(client, viewer, account=workspace_id)
    assert mcp_list(client, issued["access_token"]).status_code == 200
    agents = client.post("/agents", json={"name": "Ws Agent", "systemPrompt": "x", "workspaceId": workspace_id}, headers=people["owner"]["headers"])
    assert agents.status_code == 201, agents.text
    called = rpc(client, issued["access_token"], "tools/call", {"name": "agent_ws_agent", "arguments": {}})
    assert called.json()["result"]["isError"] is True and "PERMISSION_DENIED" in called.json()["result"]["content"][0]["text"]


@pytest.mark.stack
def test_revocation_stops_the_tokens(client, setup):
    client_id, issued = tokens_for(client, setup)
    revoked = client.post("/oauth/revoke", data={"token": issued["refresh_token"], "client_id": client_id})
    assert revoked.status_code == 200
    assert mcp_list(client, issued["access_token"]).status_code == 401
    # RFC 7009: an unknown token is not an error
    assert client.post("/oauth/revoke", data={"token": "whatever", "client_id": client_id}).status_code == 200


@pytest.mark.stack
def test_hostile_requests_get_oauth_errors_and_change_nothing(client, setup):
    client_id = register_client(client)
    cases = [
        ({"grant_type": "password", "username": "x", "password": "y", "client_id": client_id}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "code": "x" * 48, "client_id": client_id, "redirect_uri": REDIRECT, "code_verifier": "v" * 43}, "invalid_grant"),
        ({"grant_type": "authorization_code", "code": "x" * 48, "client_id": "nobody", "redirect_uri": REDIRECT}, "invalid_client"),
        ({"grant_type": "refresh_token", "refresh_token": "cdr_" + "0" * 48 + "a" * 43, "client_id": client_id}, "invalid_grant"),
        ({}, "unsupported_grant_type"),
    ]
    for form, error in cases:
        answer = client.post("/oauth/token", data=form)
        assert answer.status_code in (400, 401) and answer.json()["error"] == error, (form, answer.text)
    huge = client.post("/oauth/token", content="a=" + "x" * 20000, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(huge, 400, "VALIDATION_ERROR")
    many = client.post("/oauth/token", content="&".join(f"f{i}=1" for i in range(100)), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(many, 400, "VALIDATION_ERROR")
    as_json = client.post("/oauth/token", json={"grant_type": "authorization_code"})
    assert as_json.status_code == 400
    for body in ({"redirect_uris": ["http://evil.example.com/cb"]}, {"redirect_uris": []}, {"client_name": "x"}, {"redirect_uris": ["https://a.example.com/#f"]}):
        registered = client.post("/oauth/register", json=body)
        assert registered.status_code == 400 and registered.json()["error"] in ("invalid_redirect_uri", "invalid_client_metadata"), registered.text
    for raw in ("not json", "[1,2]", "[" * 5000):
        registered = client.post("/oauth/register", content=raw, headers={"Content-Type": "application/json"})
        assert registered.status_code == 400, registered.text
    duplicated = client.get("/oauth/authorize", params=[("client_id", client_id), ("client_id", "other"), ("response_type", "code")])
    assert duplicated.status_code == 400


class _MetadataDocument(BaseHTTPRequestHandler):
    documents: dict[str, dict] = {}

    def do_GET(self):  # noqa: N802
        document = self.documents.get(self.path)
        body = json.dumps(document).encode() if document is not None else b"{}"
        self.send_response(200 if document is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def metadata_host():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetadataDocument)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.stack
def test_a_client_id_metadata_document(client, setup, metadata_host):
    """A client id that is a URL: its document (fetched through the guarded client) names the client and its redirect URIs."""
    client_id = f"{metadata_host}/client.json"
    _MetadataDocument.documents["/client.json"] = {"client_id": client_id, "client_name": "Doc Client", "redirect_uris": [REDIRECT]}
    _MetadataDocument.documents["/liar.json"] = {"client_id": "https://someone-else.example.com/", "client_name": "Liar", "redirect_uris": [REDIRECT]}
    verifier, challenge = pkce()
    params = authorization_params(client, client_id, challenge)
    page = client.get("/oauth/authorize", params=params)
    assert page.status_code == 200 and "Doc Client" in page.text
    code = code_from(consent(client, params, setup["email"]))
    assert exchange(client, client_id, code, verifier).status_code == 200
    for bad in (f"{metadata_host}/liar.json", f"{metadata_host}/missing.json", "http://169.254.169.254/latest/meta-data/"):
        refused = client.get("/oauth/authorize", params=authorization_params(client, bad, challenge))
        assert refused.status_code == 400 and "location" not in refused.headers
