"""The Lambda events of an HTTP request: API Gateway's REST proxy event (payload
format 1.0) and the Function URL event (payload format 2.0).

One builder for each, used wherever a request has to become an event again:
the local stack's gateway (shared/local/gateway.py) builds both for the
requests it serves, and on AWS the stream server (conduit/http/stream_server.py)
rebuilds the Function URL event from the request the Lambda Web Adapter made
of it, with the `requestContext` the adapter forwards.

Standard library only, and light: the stream server imports it at the chat
function's cold start. `uuid` (a request id for a request context made up
here) is imported when one is made, which the stream server never does.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

Headers = Sequence[tuple[str, str]]  # as received: repeated names, their original case


def _body_field(raw: bytes) -> tuple[str | None, bool]:
    """The event's `body` and `isBase64Encoded`: text as it is, other bytes in base64."""
    if not raw:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), True


def _request_id() -> str:
    import uuid

    return str(uuid.uuid4())


def rest_event(
    resource: str,
    method: str,
    path: str,
    *,
    path_parameters: dict[str, str] | None = None,
    query: str = "",
    headers: Headers = (),
    raw: bytes = b"",
    source_ip: str = "127.0.0.1",
    account_id: str = "123456789012",
    stage: str = "local",
) -> dict[str, Any]:
    """An API Gateway REST proxy event (payload format 1.0) for the route `resource`
    (e.g. /vault/sites/{siteId}); `path` is the request's, without the stage."""
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        multi_headers.setdefault(name, []).append(value)
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        multi_query.setdefault(name, []).append(value)
    body, is_base64 = _body_field(raw)
    now = datetime.now(UTC)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": account_id,
            "apiId": "local",
            "resourceId": "local",
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "protocol": "HTTP/1.1",
            "requestId": _request_id(),
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {"sourceIp": source_ip, "userAgent": multi_headers.get("User-Agent", [""])[-1]},
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def function_url_event(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Headers = (),
    raw: bytes = b"",
    source_ip: str = "127.0.0.1",
    request_context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Lambda Function URL event (payload format 2.0); `path` is the path after the URL's host.

    Headers are joined by name (lower case, values comma-separated) and cookies moved to `cookies`,
    as Lambda does. `request_context` is the one Lambda built when there is one (the adapter forwards
    it); without it one is made up here, for `source_ip`."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        joined[lower] = f"{joined[lower]},{value}" if lower in joined else value
    query_parameters: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        query_parameters[name] = f"{query_parameters[name]},{value}" if name in query_parameters else value
    body, is_base64 = _body_field(raw)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": joined,
        "requestContext": _function_url_request_context(method, path, joined, source_ip)
        if request_context is None
        else request_context,
        "isBase64Encoded": is_base64,
    }
    if cookies:
        event["cookies"] = cookies
    if query_parameters:
        event["queryStringParameters"] = query_parameters
    if body is not None:
        event["body"] = body
    return event


def _function_url_request_context(method: str, path: str, headers: dict[str, str], source_ip: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "accountId": "anonymous",
        "apiId": "local",
        "domainName": headers.get("host", "127.0.0.1"),
        "domainPrefix": "local",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": _request_id(),
        "routeKey": "$default",
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
