"""Conduit as an MCP server (API.md §12.2), on a Lambda Function URL.

    POST /mcp                                       JSON-RPC (conduit.mcp_server), API keys only
    GET|DELETE /mcp                                 405 (stateless: no stream, no session to end)
    GET /.well-known/oauth-protected-resource[/mcp] protected resource metadata (RFC 9728)

A Function URL, not API Gateway: an agent tool waits up to 60 s for its run, past API
Gateway's 29 s integration timeout. The function serves every path of its URL's origin, so the
metadata it names (`<base>/mcp`) is where the endpoint really is. The resolver is not called
`app`: JSON-RPC is not part of the REST API's OpenAPI document.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from conduit import mcp_server
from conduit.api import handler_for, make_resolver
from conduit.auth import keys_only, public
from conduit.errors import ConduitError
from conduit.settings import get_settings

mcp_app = make_resolver("function_url")
RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource"


def base_url() -> str:
    """The origin this request reached: Function URLs are https; the local stack is plain http."""
    headers = mcp_app.current_event.headers or {}
    host = next((value for name, value in headers.items() if name.lower() == "host"), None)
    host = host or (mcp_app.current_event.raw_event.get("requestContext") or {}).get("domainName") or "localhost"
    forwarded = next((value for name, value in headers.items() if name.lower() == "x-forwarded-proto"), None)
    scheme = forwarded or ("http" if get_settings().local_mode else "https")
    return f"{scheme}://{host}"


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
    if error.status == 401:
        headers["WWW-Authenticate"] = f'Bearer resource_metadata="{base_url()}{RESOURCE_METADATA_PATH}/mcp"'
    return _json(error.status, mcp_server.conduit_error_message(error), headers)


@mcp_app.post("/mcp")
@keys_only
def mcp_endpoint():  # noqa: ANN201 - a Response annotation breaks Powertools validation
    event = mcp_app.current_event
    caller = mcp_app.context["caller"]  # put there by the gate
    answer = mcp_server.handle(event.decoded_body, dict(event.headers or {}), caller)
    return _json(answer.status, answer.body)


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


lambda_handler = handler_for(mcp_app)
