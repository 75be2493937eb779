"""DynamoDB requests per API call, counted through botocore's before-call event; and the warm path
of the read routes and of a chat exchange, timed and split three ways.

Each route runs in-process against moto, through the same handler Lambda
runs, after one warm-up call (so cached secrets and clients are not counted).
The split (median of TIMED_RUNS calls): moto's time (its in-process dispatch,
which stands for DynamoDB itself), botocore's (the rest of each AWS call:
building, signing and parsing on the client side) and ours (the rest of the
handler: the resolver, validation, the domain code, serialization).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from shared.local.template import Template

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": "ConduitTable",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Conduit",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "ADMIN_EMAILS": "bench@example.com",
        "LOCAL_MODE": "true",  # the /mcp tools/call row calls a site on loopback
    }
)


TIMED_RUNS = 15


class _Stopwatch:
    """Time spent in AWS calls (botocore's before-call to after-call) and, within them, in moto."""

    def __init__(self, client: Any) -> None:
        from moto.core.botocore_stubber import BotocoreStubber

        self.aws = self.moto = 0.0
        self._started = 0.0
        client.meta.events.register("before-call.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)
        dispatch = BotocoreStubber.process_request
        watch = self

        def timed(stubber: Any, request: Any) -> Any:
            started = time.perf_counter()
            try:
                return dispatch(stubber, request)
            finally:
                watch.moto += time.perf_counter() - started

        BotocoreStubber.process_request = timed  # type: ignore[method-assign]

    def _before(self, **_: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, **_: Any) -> None:
        self.aws += time.perf_counter() - self._started

    def split(self, call: Callable[[], Any], runs: int = TIMED_RUNS) -> dict[str, float]:
        """Median ms of the whole call and of its three parts over `runs` calls."""
        parts: dict[str, list[float]] = {"total_ms": [], "ours_ms": [], "botocore_ms": [], "moto_ms": []}
        for _ in range(runs):
            self.aws = self.moto = 0.0
            started = time.perf_counter()
            call()
            total = time.perf_counter() - started
            for name, seconds in (("total_ms", total), ("ours_ms", total - self.aws), ("botocore_ms", self.aws - self.moto), ("moto_ms", self.moto)):
                parts[name].append(seconds * 1000)
        return {name: round(statistics.median(values), 2) for name, values in parts.items()}


def measure() -> list[dict[str, Any]]:
    import boto3
    from moto import mock_aws

    from conduit.http.events import rest_event
    from shared.local.emulator import create_resources
    from shared.local.workers import LocalLambdaContext, load_handler
    from conduit.platform.settings import SCHEDULES_NEED, Settings

    template = Template()
    specs = template.functions()
    # What the functions check at import (Settings.require), as the template tells the agents function.
    agents_environment = next(s for s in specs if s.logical_id == "AgentsFunction").environment
    for field in SCHEDULES_NEED:
        name = str(Settings.model_fields[field].validation_alias)
        os.environ[name] = agents_environment[name]
    handlers = {spec.logical_id: load_handler(spec) for spec in specs}
    rows = []
    with mock_aws():
        create_resources(boto3.client, template)
        from conduit.platform.aws import dynamodb_client

        requests: list[str] = []
        dynamodb_client().meta.events.register("before-call.dynamodb", lambda model, **_: requests.append(model.name))
        stopwatch = _Stopwatch(dynamodb_client())

        def call(function: str, method: str, path: str, body: Any = None, token: str | None = None) -> dict[str, Any]:
            headers = [("Authorization", f"Bearer {token}")] if token else []
            raw = json.dumps(body).encode() if body is not None else b""
            event = rest_event("/{proxy+}", method, path, headers=headers, raw=raw)
            result = handlers[function](event, LocalLambdaContext(function, 512, 29, "bench"))
            return json.loads(result["body"] or "null")

        session = call("AuthFunction", "POST", "/auth/register", {"email": "bench@example.com", "password": "bench password"})
        token = session["accessToken"]
        session_user = session["user"]["id"]
        call("AuthFunction", "POST", "/auth/accept-terms", {}, token)
        api_key = call("AuthFunction", "POST", "/api-keys", {"name": "bench"}, token)["key"]
        routes = [
            ("AuthFunction", "GET", "/auth/me", None, token),
            ("AuthFunction", "GET", "/auth/me (API key)", None, api_key),
            ("BillingFunction", "GET", "/billing", None, token),
            ("BillingFunction", "GET", "/billing/ledger", None, token),
            ("AdminFunction", "GET", "/admin/users", None, token),
            ("AuthFunction", "POST", "/auth/login", {"email": "bench@example.com", "password": "bench password"}, None),
        ]
        routes += [
            ("AgentsFunction", "POST", "/agents", {"name": "Bench", "systemPrompt": "Say hi"}, token),
            ("AgentsFunction", "GET", "/agents", None, token),
        ]
        for function, method, label, body, bearer in routes:
            path = label.split(" ", 1)[0]
            call(function, method, path, body, bearer)  # warm-up: secrets and clients cached
            requests.clear()
            call(function, method, path, body, bearer)
            rows.append({"route": f"{method} {label}", "requests": len(requests), "operations": list(requests)})
        # A run start takes the agent's lock: warm up on one agent, count on the other.
        warm_agent, counted_agent = (item["id"] for item in call("AgentsFunction", "GET", "/agents", None, token)["items"])
        call("AgentsFunction", "POST", f"/agents/{warm_agent}/runs", {}, token)
        requests.clear()
        run = call("AgentsFunction", "POST", f"/agents/{counted_agent}/runs", {}, token)
        assert run["status"] == "running", run
        rows.append({"route": "POST /agents/{id}/runs", "requests": len(requests), "operations": list(requests)})
        requests.clear()
        refresh = call("AuthFunction", "POST", "/auth/login", {"email": "bench@example.com", "password": "bench password"})
        requests.clear()
        call("AuthFunction", "POST", "/auth/refresh", {"refreshToken": refresh["refreshToken"]})
        rows.append({"route": "POST /auth/refresh", "requests": len(requests), "operations": list(requests)})
        mcp_rows, site_id = _mcp_tools_call(handlers, call, requests, token, api_key, session_user)
        rows.extend(mcp_rows)
        chat_row, session = _chat_exchange(handlers, call, requests, token, stopwatch)
        rows.append(chat_row)
        ids = {
            "agentId": counted_agent,
            "runId": run["id"],
            "siteId": site_id,
            "sessionToken": session,
            "workspaceId": _workspace(call, token, session_user),
        }
        rows.extend(_openapi_reads(template, handlers, requests, token, ids, stopwatch))
    return rows


def _workspace(call, token: str, user_id: str) -> str:
    """A workspace of the bench user (workspaces are a paid feature: the account is made a team one)."""
    from conduit.platform.aws import dynamodb_client

    dynamodb_client().update_item(
        TableName=os.environ["TABLE_NAME"],
        Key={"PK": {"S": f"ACCOUNT#{user_id}"}, "SK": {"S": "ACCOUNT"}},
        UpdateExpression="SET tier = :team",
        ExpressionAttributeValues={":team": {"S": "team"}},
    )
    return call("WorkspacesFunction", "POST", "/workspaces", {"name": "Bench"}, token)["id"]


def _openapi_reads(template, handlers, requests: list[str], token: str, ids: dict[str, str], stopwatch: _Stopwatch) -> list[dict[str, Any]]:
    """Every GET route of the OpenAPI document (functions/platform/openapi.json), called as its owner
    (path parameters filled with things the bench made), warm: so this part of the table is generated
    from the document, and a new read route appears in it without anyone adding a row."""
    from types import SimpleNamespace

    from conduit.http.events import rest_event
    from shared.local.routing import Router
    from shared.local.workers import LocalLambdaContext

    document = json.loads((template.path.parent / "functions" / "platform" / "openapi.json").read_text())
    router = Router([SimpleNamespace(spec=spec) for spec in template.functions()])  # type: ignore[list-item]
    rows = []
    for path, operations in document["paths"].items():
        if "get" not in operations:
            continue
        concrete = path
        for name, value in ids.items():
            concrete = concrete.replace("{" + name + "}", value)
        match = router.match("GET", concrete)
        if "{" in concrete or match is None or match.route is None:
            rows.append({"route": f"GET {path}", "requests": None, "operations": ["not measured: no value for its parameters"]})
            continue
        function = match.pool.spec.logical_id
        headers = [("Authorization", f"Bearer {token}")]  # a public route ignores it

        def get() -> int:
            event = rest_event(match.route.path, "GET", concrete, headers=headers, path_parameters=match.path_parameters)
            return int(handlers[function](event, LocalLambdaContext(function, 512, 29, "bench"))["statusCode"])

        get()  # warm-up
        requests.clear()
        status = get()
        row = {"route": f"GET {path}", "requests": len(requests), "operations": list(requests), "status": status}
        rows.append(row | {"warm": stopwatch.split(get)})
    return rows


def _oauth_access_token(user_id: str) -> str:
    """An access token of Conduit's OAuth server for the bench's origin (http://127.0.0.1), its
    grant stored as the token endpoint stores it (how it was obtained does not change the call)."""
    from conduit.platform.ids import utc_now
    from conduit.repositories.oauth import OAuthRepository
    from conduit.identity.tokens import issue_mcp_access_token

    grant = {"grantId": "ogr_000000000000000000000001", "userId": user_id, "accountId": user_id, "clientId": "bench",
             "scope": "tools:read tools:call agents:run", "resource": "http://127.0.0.1/mcp", "refreshDigest": "-", "revoked": False}
    OAuthRepository().put_grant(grant)
    return issue_mcp_access_token(user_id, grant["grantId"], user_id, grant["scope"], "bench", grant["resource"], "http://127.0.0.1", utc_now())


def _mcp_tools_call(handlers, call, requests: list[str], token: str, api_key: str, user_id: str) -> tuple[list[dict[str, Any]], str]:
    """One modern tools/call on POST /mcp of a loopback site's tool, with an API key and with an OAuth access token."""
    import threading
    from http.server import ThreadingHTTPServer

    from bench.platform import _Tool
    from conduit.http.events import function_url_event
    from shared.local.workers import LocalLambdaContext

    site = ThreadingHTTPServer(("127.0.0.1", 0), _Tool)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        added = call("VaultFunction", "POST", "/vault/sites", {"url": f"http://127.0.0.1:{site.server_address[1]}", "token": "t"}, token)
        tool = added["tools"][0]["prefixedName"]
        message = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": tool, "arguments": {}, "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}},
        }
        rows = []
        for label, credential in (("API key", api_key), ("OAuth access token", _oauth_access_token(user_id))):
            headers = [
                ("Host", "127.0.0.1"),
                ("Authorization", f"Bearer {credential}"),
                ("Content-Type", "application/json"),
                ("MCP-Protocol-Version", "2026-07-28"),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", tool),
            ]

            def mcp_call() -> dict[str, Any]:
                event = function_url_event("POST", "/mcp", headers=headers, raw=json.dumps(message).encode())  # noqa: B023
                return json.loads(handlers["McpFunction"](event, LocalLambdaContext("McpFunction", 512, 100, "bench"))["body"])

            mcp_call()  # warm-up
            requests.clear()
            answer = mcp_call()
            assert answer["result"]["isError"] is False, answer
            rows.append({"route": f"POST /mcp tools/call ({label})", "requests": len(requests), "operations": list(requests)})
    finally:
        site.shutdown()
    return rows, added["id"]


def _chat_exchange(handlers, call, requests: list[str], token: str, stopwatch: _Stopwatch) -> tuple[dict[str, Any], str]:
    """One POST /chat exchange (its Function URL event) with local:echo and no tool call."""
    from conduit.http.events import function_url_event
    from shared.local.workers import LocalLambdaContext

    session = call("ChatFunction", "POST", "/sessions", {}, token)["sessionToken"]

    def chat(message: str) -> dict[str, Any]:
        headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
        body = json.dumps({"sessionToken": session, "message": message}).encode()
        event = function_url_event("POST", "/", headers=headers, raw=body)
        return json.loads(handlers["ChatFunction"](event, LocalLambdaContext("ChatFunction", 512, 100, "bench"))["body"])

    chat("hello")  # warm-up, and a message in the history as a real exchange has
    requests.clear()
    answer = chat("hello again")
    assert answer["message"]["role"] == "assistant", answer
    row = {"route": "POST /chat (no tool)", "requests": len(requests), "operations": list(requests)}
    return row | {"warm": stopwatch.split(lambda: chat("and again"))}, session
