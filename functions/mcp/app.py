"""Conduit as an MCP server (API.md §12.2), on a Lambda Function URL, with its OAuth 2.1
authorization server on the same origin.

    POST /mcp                                       JSON-RPC (conduit.mcp.server): API keys, OAuth access tokens
    GET|DELETE /mcp                                 405 (stateless: no stream, no session to end)
    GET /.well-known/oauth-protected-resource[/mcp] protected resource metadata (RFC 9728)
    GET /.well-known/oauth-authorization-server     authorization server metadata (RFC 8414)
    GET|POST /oauth/authorize                       the sign-in and consent page
    POST /oauth/token                               authorization_code, refresh_token (rotated)
    POST /oauth/register                            dynamic client registration (RFC 7591)
    POST /oauth/revoke                              token revocation (RFC 7009)

A Function URL, not API Gateway: an agent tool waits up to 60 s for its run, past API
Gateway's 29 s integration timeout. The function serves every path of its URL's origin, so the
metadata it names (`<base>/mcp`) is where the endpoint really is. The resolver is not called
`app`: JSON-RPC is not part of the REST API's OpenAPI document.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from conduit.mcp import server as mcp_server
from conduit.http.api import form_body, handler_for, make_resolver
from conduit.platform import safe_json
from conduit.identity.gate import mcp_credentials, public, request_origin
from conduit.platform.errors import ConduitError
from conduit.platform.settings import RUNS_NEED, get_settings

mcp_app = make_resolver("function_url", needs=RUNS_NEED)
RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource"


def base_url() -> str:
    """The origin this request reached: the issuer, and `<base>/mcp` the resource."""
    event = mcp_app.current_event
    return request_origin(dict(event.headers or {}), event.raw_event.get("requestContext"))


def _json(status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body) if body is not None else "",
        headers=headers or {},
    )


@mcp_app.exception_handler(ConduitError)
def handle_conduit_error(error: ConduitError) -> Response:
    """Errors before JSON-RPC is read (the gate, an oversized body) as JSON-RPC errors; a 401
    carries the challenge that points clients at the protected resource metadata."""
    headers = dict(error.headers)
    if mcp_app.current_event.path != "/mcp":  # the OAuth routes: Conduit's usual error body
        return _json(error.status, error.body(), headers)
    if error.status == 401:
        headers["WWW-Authenticate"] = f'Bearer resource_metadata="{base_url()}{RESOURCE_METADATA_PATH}/mcp"'
    return _json(error.status, mcp_server.conduit_error_message(error), headers)


@mcp_app.post("/mcp")
@mcp_credentials
def mcp_endpoint():  # noqa: ANN201 - a Response annotation breaks Powertools validation
    event = mcp_app.current_event
    caller = mcp_app.context["caller"]  # put there by the gate
    answer = mcp_server.handle(event.decoded_body, dict(event.headers or {}), caller)
    return _json(answer.status, answer.body, answer.headers)


@mcp_app.get("/mcp")
@public()
def no_stream():  # noqa: ANN201 - a Response annotation breaks Powertools validation
    return _json(
        405,
        mcp_server.error_message(None, -32600, "Method Not Allowed: this MCP endpoint is stateless; POST each message"),
        {"Allow": "POST"},
    )


@mcp_app.delete("/mcp")
@public()
def no_session():  # noqa: ANN201 - a Response annotation breaks Powertools validation
    return no_stream()


@mcp_app.get(RESOURCE_METADATA_PATH)
@mcp_app.get(RESOURCE_METADATA_PATH + "/mcp")
@public(limit_by_ip=True)
def protected_resource_metadata():  # noqa: ANN201 - a Response annotation breaks Powertools validation
    base = base_url()
    return _json(
        200,
        {
            "resource": f"{base}/mcp",
            "authorization_servers": [base],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["tools:read", "tools:call", "agents:run"],
            "resource_name": "Conduit",
            "resource_documentation": f"{base}/docs",
        },
    )


# --- the authorization server (conduit/identity/oauth_server.py: Authlib, imported by these routes only) ---

MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 40
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _server():  # noqa: ANN202 - the type lives in the lazily imported module
    from conduit.identity import oauth_server

    return oauth_server.Server(oauth_server.Endpoints(base_url()))


def _pairs(text: str | None) -> list[tuple[str, str]]:
    """Form or query fields; too long, too many or malformed → VALIDATION_ERROR."""
    from urllib.parse import parse_qsl

    text = text or ""
    if len(text) > MAX_FORM_BYTES:
        raise ConduitError("VALIDATION_ERROR", f"The request is larger than {MAX_FORM_BYTES} bytes")
    try:
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise ConduitError("VALIDATION_ERROR", f"At most {MAX_FORM_FIELDS} fields") from None


def _form_request(method: str, pairs: list[tuple[str, str]]):  # noqa: ANN202
    from conduit.identity import oauth_server

    event = mcp_app.current_event
    return oauth_server.FormRequest(method, f"{base_url()}{event.path}", pairs, dict(event.headers or {}))


def _reply(reply) -> Response:  # noqa: ANN001 - an oauth_server.Reply
    headers = {**reply.headers, "Cache-Control": "no-store"}
    if isinstance(reply.body, dict):
        return _json(reply.status, reply.body, headers)
    return Response(status_code=reply.status, content_type=content_types.TEXT_PLAIN, body=reply.body or "", headers=headers)


def _raw_query() -> str:
    event = mcp_app.current_event
    raw = event.raw_event.get("rawQueryString")
    if raw is not None:
        return raw
    from urllib.parse import urlencode

    return urlencode(event.query_string_parameters or {})


def _csrf_cookie() -> str | None:
    from conduit.identity.oauth_server import CSRF_COOKIE

    for cookie in mcp_app.current_event.raw_event.get("cookies") or []:
        name, _, value = cookie.partition("=")
        if name.strip() == CSRF_COOKIE:
            return value.strip()
    return None


@mcp_app.get("/.well-known/oauth-authorization-server")
@public(limit_by_ip=True)
def authorization_server_metadata():  # noqa: ANN201 - a Response annotation breaks Powertools validation
    from conduit.identity import oauth_server

    return _json(200, oauth_server.Endpoints(base_url()).metadata(), {"Cache-Control": "max-age=300"})


@mcp_app.get("/oauth/authorize")
@mcp_app.post("/oauth/authorize")
@public(limit_by_ip=True)
@form_body
def authorize():  # noqa: ANN201 - a Response annotation breaks Powertools validation
    from conduit.identity import oauth_server

    event = mcp_app.current_event
    server = _server()
    if event.http_method == "GET":
        request, form = _form_request("GET", _pairs(_raw_query())), None
    else:
        fields = _pairs(event.decoded_body)
        form = dict(reversed(fields))  # the first value of each field
        request = _form_request("GET", [(name, value) for name, value in fields if name in oauth_server.AUTHORIZATION_PARAMETERS])
    outcome = oauth_server.authorize(server, request, form, _csrf_cookie())
    if isinstance(outcome, oauth_server.Reply):
        return _reply(outcome)
    cookie = f"{oauth_server.CSRF_COOKIE}={outcome.csrf}; Path=/oauth; HttpOnly; SameSite=Strict"
    if not get_settings().local_mode:
        cookie += "; Secure"
    return Response(
        status_code=outcome.status,
        content_type="text/html; charset=utf-8",
        body=outcome.html,
        headers=PAGE_HEADERS,
        cookies=[cookie] if outcome.csrf else None,
    )


@mcp_app.post("/oauth/token")
@public()  # not limited by IP: AI platforms refresh for all their users from a few addresses; codes and tokens are unguessable
@form_body
def token():  # noqa: ANN201 - a Response annotation breaks Powertools validation
    server = _server()
    return _reply(server.create_token_response(_form_request("POST", _pairs(mcp_app.current_event.decoded_body))))


@mcp_app.post("/oauth/revoke")
@public()  # not limited by IP: AI platforms refresh for all their users from a few addresses; codes and tokens are unguessable
@form_body
def revoke():  # noqa: ANN201 - a Response annotation breaks Powertools validation
    server = _server()
    request = _form_request("POST", _pairs(mcp_app.current_event.decoded_body))
    return _reply(server.create_endpoint_response("revocation", request))


@mcp_app.post("/oauth/register")
@public(limit_by_ip=True)
def register():  # noqa: ANN201 - a Response annotation breaks Powertools validation
    from conduit.identity import oauth_server

    body = mcp_app.current_event.decoded_body or ""
    if len(body) > MAX_FORM_BYTES:
        raise ConduitError("VALIDATION_ERROR", f"The request is larger than {MAX_FORM_BYTES} bytes")
    try:
        data = safe_json.loads(body)
    except ValueError:
        return _json(400, {"error": "invalid_client_metadata", "error_description": "The body must be a JSON object"})
    server = _server()
    request = oauth_server.JsonBodyRequest(f"{base_url()}/oauth/register", data, dict(mcp_app.current_event.headers or {}))
    return _reply(server.create_endpoint_response("client_registration", request))


lambda_handler = handler_for(mcp_app)
