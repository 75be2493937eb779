"""Conduit as an MCP server (API.md §12.2): JSON-RPC over Streamable HTTP, stateless, both generations.

- Modern (2026-07-28): every request carries `_meta["io.modelcontextprotocol/protocolVersion"]`,
  mirrored in the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers; results carry
  `resultType`; `server/discover` describes the server.
- Handshake era (2025-03-26 … 2025-11-25): `initialize` is answered without a session (no
  `Mcp-Session-Id` is minted, none is read), `notifications/initialized` is accepted (202), and
  every later request stands on its own: the server holds nothing between requests.

Answers are single JSON objects (never SSE). Failures of a tool are results with `isError: true`;
failures of the request itself are JSON-RPC errors. The caller is authenticated by the gate
before this module sees the request; tools are listed with the `read` permission and called
with `write` on the account the credential names (a workspace viewer's key lists, cannot call).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from conduit.platform import safe_json
from conduit.billing import credits
from conduit.identity.access import account_for
from conduit.identity.gate import Caller
from conduit.platform.errors import ConduitError
from conduit.platform.ids import new_id
from conduit.models import compact
from conduit.repositories.accounts import Account
from conduit.repositories.agents import AgentsRepository
from conduit.repositories.runs import RunsRepository
from conduit.agents.runs import start_run
from conduit.vault.toolbox import available_tools

MODERN_VERSIONS = ("2026-07-28",)
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
SUPPORTED_VERSIONS = (*MODERN_VERSIONS, *HANDSHAKE_VERSIONS)
DEFAULT_HANDSHAKE_VERSION = "2025-03-26"  # a request without MCP-Protocol-Version (the spec's rule)
META_VERSION = "io.modelcontextprotocol/protocolVersion"
SERVER_INFO = {"name": "conduit", "title": "Conduit", "version": "2.0.0"}
INSTRUCTIONS = (
    "Tools of the sites in this Conduit account's vault (named <site>_<tool>) and one tool per "
    "active agent (agent_<name>), which starts a run and returns its output."
)
AGENT_WAIT_SECONDS = 60.0
AGENT_POLL_SECONDS = 0.5
TOOL_CALL_SECONDS = 30.0

# JSON-RPC 2.0 and MCP error codes.
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
HEADER_MISMATCH, UNSUPPORTED_PROTOCOL_VERSION = -32020, -32022
CACHEABLE_METHODS = ("server/discover", "tools/list")
_AGENT_NAME = re.compile(r"[^a-z0-9_]+")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the endpoint sends back: an HTTP status and a JSON-RPC message (None: no body)."""

    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)


def error_message(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def conduit_error_message(error: ConduitError) -> dict[str, Any]:
    """A Conduit error (401 from the gate, 429, an oversized body) as a JSON-RPC error without id.
    Its code is the HTTP status: MCP leaves codes outside -32768…-32000 to applications."""
    return error_message(None, error.status, error.message, {"code": error.code, "statusCode": error.status})


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


def _decode_header_value(value: str) -> str | None:
    """The `=?base64?…?=` sentinel of the spec's value encoding, decoded; None if undecodable."""
    if value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return value


# --- tools ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    site: dict[str, Any] | None = None
    agent: dict[str, Any] | None = None

    def listing(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "inputSchema": self.input_schema}


def agent_tool_name(agent_name: str) -> str:
    return "agent_" + (_AGENT_NAME.sub("_", agent_name.lower()).strip("_") or "unnamed")[:100]


def account_tools(account: Account) -> dict[str, Tool]:
    """The account's tools by name: every active site's tools (the prefixed names and schemas chat
    uses), then one per active agent; a name already taken keeps its first owner."""
    tools = _site_tools(account)
    for name, tool in _agent_tools(account).items():
        tools.setdefault(name, tool)
    return tools


def find_tool(account: Account, name: str) -> Tool | None:
    """The tool a call names; the agents are read only when no site tool has the name."""
    return _site_tools(account).get(name) or _agent_tools(account).get(name)


def _site_tools(account: Account) -> dict[str, Tool]:
    """Every active site's tools, as chat offers them to the model when a session names no sites."""
    return {
        name: Tool(name, available.spec.description, available.spec.input_schema, site=available.site)
        for name, available in available_tools(account, {}).items()
    }


def _agent_tools(account: Account) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    for agent in AgentsRepository().all_for_account(account.account_id):
        if not agent["isActive"]:
            continue
        schema = json.loads(agent["webhookSchemaJson"]) if agent.get("webhookSchemaJson") else {}
        input_schema: dict[str, Any] = {
            "type": "object",
            "properties": {"input": {**schema, "description": "The run's input"}},
            "additionalProperties": False,
        }
        if schema:
            input_schema["required"] = ["input"]
        description = agent.get("description") or f"Run the agent {agent['name']}"
        description += f" (starts a run; returns its output, or its runId if it has not ended within {int(AGENT_WAIT_SECONDS)} s)"
        tools.setdefault(agent_tool_name(agent["name"]), Tool(agent_tool_name(agent["name"]), description, input_schema, agent=agent))
    return tools


def _text_result(text: str, *, is_error: bool, structured: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None:
        result["structuredContent"] = structured
    return result


def _failure(error: ConduitError) -> dict[str, Any]:
    return _text_result(f"{error.code}: {error.message}", is_error=True, structured={"code": error.code, "error": error.message})


def require_scope(caller: Caller, scope: str) -> None:
    """An OAuth access token works within the scopes the person granted (API keys have them all):
    403 with the challenge that tells the client which scope to ask for (MCP step-up authorization)."""
    if caller.key is not None and not caller.key.allows(scope):
        raise ConduitError(
            "PERMISSION_DENIED",
            f"This access token was not granted the {scope} scope",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )


def call(caller: Caller, tool_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A tools/call result. Every failure past finding the tool (and its scope) is an `isError` result."""
    account = account_for(caller, None, "read")
    tool = find_tool(account, tool_name)
    if tool is None:
        raise LookupError(tool_name)
    require_scope(caller, "tools:call" if tool.site is not None else "agents:run")
    # The site-call stack (httpx, manifests, jsonschema) only for tools/call, not initialize or tools/list.
    from conduit.vault.tool_calls import check_arguments, run_site_tool

    try:
        account = account_for(caller, None, "write")  # a viewer lists tools but cannot call them
        if tool.site is not None:
            call_id = new_id("mcp")

            def charge(cost: int) -> None:
                # The call's only credits write: it starts from the account the gate has just read.
                credits.spend(account.account_id, cost, f"mcp: tool {tool.name}", key=f"{call_id}:tool", account_item=account.item)

            outcome = run_site_tool(
                account.account_id, tool.site, tool.name, arguments, charge=charge, remaining=lambda: TOOL_CALL_SECONDS
            )
            structured = outcome if isinstance(outcome, dict) else None
            return _text_result(compact(outcome), is_error=False, structured=structured)
        check_arguments({"name": tool.name, "inputSchema": tool.input_schema}, arguments)
        return _run_agent(account, tool.agent or {}, arguments.get("input"))
    except ConduitError as error:
        return _failure(error)


def _run_agent(account: Account, agent: dict[str, Any], run_input: Any) -> dict[str, Any]:
    """Start a run and wait up to 60 s for it to end (the Lambda's timeout leaves room for this)."""
    run = start_run(account, agent, run_input, "mcp")
    deadline = time.monotonic() + AGENT_WAIT_SECONDS
    runs = RunsRepository()
    while time.monotonic() < deadline:
        time.sleep(AGENT_POLL_SECONDS)
        stored = runs.find(run["id"])
        if stored is None or stored["status"] == "running":
            continue
        if stored["status"] == "succeeded":
            output = stored.get("output")
            return _text_result(
                output if isinstance(output, str) else compact(output),
                is_error=False,
                structured={"runId": run["id"], "status": "succeeded", "output": output},
            )
        error = json.loads(stored["errorJson"]) if stored.get("errorJson") else {}
        message = error.get("message") or f"The run ended {stored['status']}"
        return _text_result(
            f"Run {run['id']} {stored['status']}: {message}",
            is_error=True,
            structured={"runId": run["id"], "status": stored["status"], "error": error or None},
        )
    return _text_result(
        f"Run {run['id']} is still running; GET /runs/{run['id']} tells how it ends",
        is_error=False,
        structured={"runId": run["id"], "status": "running"},
    )


# --- the endpoint -----------------------------------------------------------------------------
def handle(body: str | None, headers: dict[str, str], caller: Caller) -> Answer:
    """One POST to /mcp: a single JSON-RPC request or notification."""
    try:
        message = safe_json.loads(body or "")
    except ValueError:
        return Answer(400, error_message(None, PARSE_ERROR, "Parse error: the body is not JSON"))
    if isinstance(message, list):
        return Answer(400, error_message(None, INVALID_REQUEST, "Batch requests are not supported: send one JSON-RPC message per POST"))
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str):
        request_id = message.get("id") if isinstance(message, dict) and _valid_id(message.get("id")) else None
        return Answer(400, error_message(request_id, INVALID_REQUEST, 'Invalid Request: expected {"jsonrpc": "2.0", "method": …}'))
    method = message["method"]
    if "id" not in message:  # a notification (notifications/initialized, cancelled, …): accepted, nothing to answer
        return Answer(202, None)
    request_id = message["id"]
    if not _valid_id(request_id):
        return Answer(400, error_message(None, INVALID_REQUEST, "Invalid Request: id must be a string or an integer"))
    params = message.get("params", {})
    if not isinstance(params, dict):
        return Answer(400, error_message(request_id, INVALID_PARAMS, "Invalid params: params must be an object"))
    meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
    header_version = _header(headers, "MCP-Protocol-Version")

    if method == "initialize":  # handshake era: answered, nothing kept
        requested = params.get("protocolVersion")
        version = requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[0]
        return Answer(
            200,
            _result(
                request_id,
                {
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": False}},
                    "serverInfo": SERVER_INFO,
                    "instructions": INSTRUCTIONS,
                },
                modern=False,
            ),
        )

    if META_VERSION in meta:
        version = meta[META_VERSION]
        if version not in MODERN_VERSIONS:
            return _unsupported(request_id, version)
        mismatch = _header_mismatch(headers, header_version, version, method, params)
        if mismatch:
            return Answer(400, error_message(request_id, HEADER_MISMATCH, f"Header mismatch: {mismatch}"))
        modern = True
    else:
        version = header_version or DEFAULT_HANDSHAKE_VERSION
        if version in MODERN_VERSIONS:
            return Answer(
                400,
                error_message(request_id, HEADER_MISMATCH, f"Header mismatch: MCP-Protocol-Version {version} needs params._meta[{META_VERSION!r}]"),
            )
        if version not in HANDSHAKE_VERSIONS:
            return _unsupported(request_id, version)
        modern = False

    try:
        if method == "server/discover":
            result = {
                "supportedVersions": list(SUPPORTED_VERSIONS),
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": SERVER_INFO,
                "instructions": INSTRUCTIONS,
            }
        elif method == "ping":
            result = {}
        elif method == "tools/list":
            require_scope(caller, "tools:read")
            account = account_for(caller, None, "read")
            result = {"tools": [tool.listing() for tool in account_tools(account).values()]}
        elif method == "tools/call":
            name, arguments = params.get("name"), params.get("arguments", {})
            if not isinstance(name, str) or not isinstance(arguments, dict):
                return Answer(400 if modern else 200, error_message(request_id, INVALID_PARAMS, "Invalid params: name (string) and arguments (object) are required"))
            try:
                result = call(caller, name, arguments)
            except LookupError:
                return Answer(400 if modern else 200, error_message(request_id, INVALID_PARAMS, f"Unknown tool: {name}"))
        else:
            # Modern servers answer an unknown method with 404 (the body tells it from a missing
            # endpoint); in the handshake era a 404 means "session expired", so it stays 200.
            return Answer(404 if modern else 200, error_message(request_id, METHOD_NOT_FOUND, f"Method not found: {method}"))
    except ConduitError as error:  # the account is gone, the caller left the workspace, …
        return Answer(error.status, {**conduit_error_message(error), "id": request_id}, dict(error.headers))
    if modern and method in CACHEABLE_METHODS:
        # 2026-07-28 caching hints: the tools are one account's (private) and change with its vault (0 ms).
        result = {**result, "ttlMs": 0, "cacheScope": "private"}
    return Answer(200, _result(request_id, result, modern=modern))


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _result(request_id: Any, result: dict[str, Any], *, modern: bool) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": {**result, "resultType": "complete"} if modern else result}


def _unsupported(request_id: Any, requested: Any) -> Answer:
    data = {"supported": list(SUPPORTED_VERSIONS), "requested": requested if isinstance(requested, str) else str(requested)[:100]}
    return Answer(400, error_message(request_id, UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version", data))


def _header_mismatch(
    headers: dict[str, str], header_version: str | None, version: str, method: str, params: dict[str, Any]
) -> str | None:
    """What the modern request's mirrored headers get wrong (the spec's server validation), or None."""
    if header_version != version:
        return f"MCP-Protocol-Version header {header_version!r} does not match _meta version {version!r}"
    method_header = _header(headers, "Mcp-Method")
    if method_header != method:
        return f"Mcp-Method header {method_header!r} does not match method {method!r}"
    if method in ("tools/call", "resources/read", "prompts/get"):
        body_name = params.get("name") if method != "resources/read" else params.get("uri")
        raw = _header(headers, "Mcp-Name")
        if raw is None or _decode_header_value(raw) != body_name:
            return f"Mcp-Name header {raw!r} does not match {body_name!r}"
    return None
