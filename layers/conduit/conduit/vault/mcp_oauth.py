"""OAuth for MCP servers (API.md §12.1, the MCP authorization spec), started by /vault/oauth/start.

Written by hand over the guarded client rather than with Authlib: the flow is four JSON fetches and
one form POST, every one of which must go through `outbound.GuardedClient` (SSRF rules on every
hop, size and time caps); Authlib's clients are built on requests/httpx sessions of their own, so
using it would mean adapting its transport and still checking every URL ourselves, for little code
saved (PKCE, the code exchange and refresh with rotation already live in site_oauth.py).

Steps:
1. POST the endpoint without a token; a 401 whose `WWW-Authenticate` names `resource_metadata`
   gives the protected resource metadata URL (RFC 9728); without it, the well-known URLs
   `/.well-known/oauth-protected-resource/<path>` then `/.well-known/oauth-protected-resource`.
2. The metadata's `resource` must be this endpoint (same origin, a prefix of its path), and names
   the authorization server (the first of `authorization_servers`).
3. Authorization server metadata: RFC 8414 (`/.well-known/oauth-authorization-server` + issuer
   path), then OpenID discovery (`/.well-known/openid-configuration` inserted, then appended). Its
   `issuer` must equal the issuer asked for (mix-up defence), and it must list S256 in
   `code_challenge_methods_supported` (PKCE is not optional for MCP).
4. Client id: the `SITE_OAUTH_CLIENT_ID` knob if set, else dynamic client registration (RFC 7591)
   at `registration_endpoint` (a public client: `token_endpoint_auth_method: none`).
5. The authorization URL carries PKCE S256, `state`, the redirect URI, the scopes asked for (else
   the resource's `scopes_supported` is not asked for wholesale: none) and `resource` (RFC 8707).
   /vault/oauth/complete exchanges the code (with `resource`) and adds the site with its tokens;
   refresh and rotation are site_oauth's, with `resource` sent again.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from conduit.platform.errors import ConduitError, validation_error
from conduit.vault.manifests import _structure_problem
from conduit.platform.safe_json import loads as parse_json
from conduit.vault.mcp_client import McpClient, McpFailure
from conduit.net.outbound import GuardedClient, OutboundError, OutboundRefused, check_url_syntax
from conduit.platform.settings import get_settings

MAX_METADATA_BYTES = 64 * 1024
_RESOURCE_METADATA = re.compile(r'resource_metadata\s*=\s*"([^"]{1,2048})"')


class McpOAuth:
    """What /vault/oauth/start learned about an MCP server's authorization."""

    def __init__(self, resource: str, issuer: str, authorization_endpoint: str, token_endpoint: str, client_id: str) -> None:
        self.resource = resource
        self.issuer = issuer
        self.authorization_endpoint = authorization_endpoint
        self.token_endpoint = token_endpoint
        self.client_id = client_id


def _fail(message: str) -> ConduitError:
    return ConduitError("MANIFEST_INVALID", f"The MCP server's authorization cannot be used: {message}",
                        details=[{"field": "oauth", "message": message[:300]}])


def _get_json(url: str, client: GuardedClient) -> dict[str, Any] | None:
    """A metadata document, or None when it is not there (non-2xx, not a JSON object)."""
    try:
        response = client.request("GET", url, headers={"Accept": "application/json"}, max_bytes=MAX_METADATA_BYTES)
    except OutboundRefused as refused:
        raise ConduitError("INVALID_URL", str(refused)) from None
    except OutboundError:
        return None
    if not 200 <= response.status < 300:
        return None
    try:
        document = parse_json(response.content)
    except ValueError:
        return None
    if not isinstance(document, dict) or _structure_problem(document, 8):
        return None
    return document


def _checked_url(value: Any, what: str, client: GuardedClient) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(f"{what} is missing")
    try:
        check_url_syntax(value, allow_loopback=client.allow_loopback)
    except OutboundRefused as refused:
        raise _fail(f"{what}: {refused}") from None
    return value


def challenge(url: str, client: GuardedClient) -> str | None:
    """The `resource_metadata` URL of the server's 401 challenge; None when it asks for no OAuth."""
    try:
        McpClient(url, client, timeout=client.timeout).connect()
    except McpFailure as failure:
        if failure.kind == "auth":
            found = _RESOURCE_METADATA.search(failure.challenge)
            return found.group(1) if found else ""
        if failure.kind == "refused":
            raise ConduitError("INVALID_URL", str(failure)) from None
        return None
    return None  # it answered without a token: nothing to authorize


def _resource_metadata(url: str, pointer: str, client: GuardedClient) -> dict[str, Any]:
    parsed = httpx.URL(url)
    origin = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
    candidates = [pointer] if pointer else []
    candidates += [f"{origin}/.well-known/oauth-protected-resource{parsed.path.rstrip('/')}", f"{origin}/.well-known/oauth-protected-resource"]
    for candidate in candidates:
        _checked_url(candidate, "resource_metadata", client)
        document = _get_json(candidate, client)
        if document is not None:
            return document
    raise _fail("no protected resource metadata (RFC 9728) was found")


def _same_resource(resource: str, url: str) -> bool:
    """RFC 9728 §3.3 / RFC 8707: the metadata must be about this endpoint."""
    a, b = httpx.URL(resource), httpx.URL(url)
    same_origin = (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
    return same_origin and b.path.rstrip("/").startswith(a.path.rstrip("/"))


def _authorization_server(issuer: str, client: GuardedClient) -> dict[str, Any]:
    parsed = httpx.URL(issuer)
    origin = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
    path = parsed.path.rstrip("/")
    candidates = [
        f"{origin}/.well-known/oauth-authorization-server{path}",  # RFC 8414
        f"{origin}/.well-known/openid-configuration{path}",  # OpenID, path inserted
        f"{origin}{path}/.well-known/openid-configuration",  # OpenID, path appended
    ]
    for candidate in dict.fromkeys(candidates):
        document = _get_json(candidate, client)
        if document is None:
            continue
        if document.get("issuer") != issuer:  # RFC 8414 §3.3: a mismatch must not be used
            raise _fail(f"the authorization server metadata names issuer {str(document.get('issuer'))[:100]!r}, not {issuer!r}")
        return document
    raise _fail(f"no authorization server metadata (RFC 8414 or OpenID discovery) for {issuer}")


def _register(registration_endpoint: str, redirect_uri: str, client: GuardedClient) -> str:
    """RFC 7591 dynamic client registration of Conduit as a public client."""
    body = {
        "client_name": "Conduit",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    try:
        response = client.request("POST", registration_endpoint, json=body, headers={"Accept": "application/json"},
                                  max_bytes=MAX_METADATA_BYTES)
    except OutboundRefused as refused:
        raise ConduitError("INVALID_URL", str(refused)) from None
    except OutboundError as failure:
        raise ConduitError("SITE_UNAVAILABLE", f"The registration endpoint could not be reached: {failure}") from None
    try:
        answer = parse_json(response.content) if 200 <= response.status < 300 else None
    except ValueError:
        answer = None
    client_id = answer.get("client_id") if isinstance(answer, dict) else None
    if not isinstance(client_id, str) or not client_id or len(client_id) > 256:
        raise _fail(f"dynamic client registration failed (HTTP {response.status})")
    return client_id


def discover(url: str, redirect_uri: str | None, client: GuardedClient) -> McpOAuth | None:
    """The authorization of an MCP endpoint, or None when `url` is not an MCP server asking for OAuth."""
    pointer = challenge(url, client)
    if pointer is None:
        return None
    if not redirect_uri:
        raise validation_error("redirectUri", "an MCP server needs a redirect URI (https, or http on loopback in local mode)")
    metadata = _resource_metadata(url, pointer, client)
    resource = metadata.get("resource")
    if not isinstance(resource, str) or not _same_resource(resource, url):
        raise _fail(f"the protected resource metadata is about {str(resource)[:100]!r}, not {url}")
    servers = metadata.get("authorization_servers")
    if not isinstance(servers, list) or not servers:
        raise _fail("the protected resource metadata names no authorization server")
    issuer = _checked_url(servers[0], "authorization_servers[0]", client)
    server = _authorization_server(issuer, client)
    if "S256" not in (server.get("code_challenge_methods_supported") or []):
        raise _fail("the authorization server does not offer PKCE S256")
    authorization_endpoint = _checked_url(server.get("authorization_endpoint"), "authorization_endpoint", client)
    token_endpoint = _checked_url(server.get("token_endpoint"), "token_endpoint", client)
    client_id = get_settings().site_oauth_client_id
    if not client_id:
        registration = server.get("registration_endpoint")
        if not registration:
            raise _fail("no client id is known and the authorization server offers no dynamic registration; set SITE_OAUTH_CLIENT_ID")
        client_id = _register(_checked_url(registration, "registration_endpoint", client), redirect_uri, client)
    return McpOAuth(resource, issuer, authorization_endpoint, token_endpoint, client_id)
