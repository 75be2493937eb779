"""A small MCP client (Model Context Protocol, Streamable HTTP) over the guarded HTTP client.

Why our own: the official `mcp` SDK costs about 0.55 s of import and brings its own HTTP client,
which would go around `outbound.GuardedClient` (SSRF rules, size and time caps). Every byte here
goes through the guard: one POST per JSON-RPC message, the whole answer read with a size cap and a
deadline, so a server that streams forever or sends 100 MB ends in an `McpFailure`, never a hang.

Both generations of the transport (API.md §12.1):
- the stateless 2026-07-28 revision, tried first: `server/discover`, then self-contained requests
  carrying `params._meta` (protocol version, client capabilities) and the `MCP-Protocol-Version`,
  `Mcp-Method` and `Mcp-Name` headers; no session;
- the handshake era (2025-03-26 … 2025-11-25): `initialize`, the `Mcp-Session-Id` it hands out,
  `notifications/initialized`, then requests in that session. A 404 on a request that carried a
  session means the session expired: initialize again, once.
Answers may come as JSON or as an SSE stream (the response is the event whose id is ours; the
server's notifications and requests on that stream are skipped).

Stateless in Lambda: a client lives for one invocation. What may be kept is the negotiated
protocol version (`McpClient(protocol_version=...)`, stored on the site): with a handshake-era
version, each invocation initializes its own session and closes it (DELETE) afterwards.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from conduit.vault.manifests import _structure_problem
from conduit.platform.safe_json import TooDeep
from conduit.platform.safe_json import loads as parse_json
from conduit.net.outbound import GuardedClient, OutboundError, OutboundRefused, OutboundResponse, OutboundTooLarge

MODERN_VERSION = "2026-07-28"
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")  # newest first: what we ask for first
SUPPORTED_VERSIONS = (MODERN_VERSION, *HANDSHAKE_VERSIONS)
CLIENT_INFO = {"name": "Conduit", "version": "1.0"}

MAX_DEPTH = 64  # nesting of any answer (JSON-RPC envelope + tool result)
MAX_PAGES = 20  # tools/list pages followed before giving up on a server that never stops paging
MAX_SESSION_ID = 256

# JSON-RPC error codes with a meaning of their own (JSON-RPC 2.0 and MCP).
UNSUPPORTED_PROTOCOL_VERSION = -32022
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602

_META_VERSION = "io.modelcontextprotocol/protocolVersion"
_META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
_META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
_HEADER_SAFE = re.compile(r"^[\x21-\x7E]+$")


class McpFailure(Exception):
    """Why an MCP exchange failed; the message is safe to show a user.

    kind: "refused" (an address the guard refuses, redirects included), "unavailable" (unreachable,
    too slow), "auth" (401/403; `challenge` holds WWW-Authenticate), "not_mcp" (the answer is not
    JSON-RPC at all: HTML, garbage, another status), "protocol" (a JSON-RPC answer we cannot use: too
    large, too deep, malformed), "incompatible" (it speaks MCP, but a version or session we cannot
    use), "rpc" (a JSON-RPC error: `rpc_code`).
    """

    def __init__(self, kind: str, message: str, *, rpc_code: int | None = None, challenge: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.rpc_code = rpc_code
        self.challenge = challenge


@dataclass
class _State:
    version: str | None = None  # negotiated protocol version
    session_id: str | None = None
    server: dict[str, Any] = field(default_factory=dict)  # serverInfo, instructions, capabilities


def _header_value(value: str) -> str:
    """Mcp-Name carries a tool name; anything beyond visible ASCII is sent base64 (as the SDKs do)."""
    if _HEADER_SAFE.match(value):
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode("ascii") + "?="


class McpClient:
    """One MCP server, for the length of one invocation."""

    def __init__(
        self,
        url: str,
        client: GuardedClient,
        *,
        token: str | None = None,
        protocol_version: str | None = None,
        max_bytes: int = 1_048_576,
        timeout: float | None = None,
    ) -> None:
        self.url = url
        self._http = client
        self._token = token
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._state = _State()
        self._next_id = 0
        self._known_version = protocol_version if protocol_version in SUPPORTED_VERSIONS else None

    # -- public --------------------------------------------------------------------------------

    @property
    def protocol_version(self) -> str | None:
        return self._state.version

    @property
    def server(self) -> dict[str, Any]:
        return self._state.server

    def connect(self) -> None:
        """Negotiate: the modern revision first, then the handshake. A stored version skips the probe."""
        if self._state.version is not None:
            return
        if self._known_version == MODERN_VERSION:
            self._state.version = MODERN_VERSION
            return
        if self._known_version is None and self._discover():
            return
        self._initialize()

    def list_tools(self, max_tools: int) -> list[dict[str, Any]]:
        """Every page of tools/list (at most MAX_PAGES, at most `max_tools` tools kept)."""
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            result = self.request("tools/list", {"cursor": cursor} if cursor else {})
            page = result.get("tools")
            if not isinstance(page, list):
                raise McpFailure("protocol", "The server's tools/list answer has no tools list")
            tools.extend(page)
            cursor = result.get("nextCursor")
            if not cursor or len(tools) >= max_tools:
                return tools
            if not isinstance(cursor, str) or cursor in seen:
                raise McpFailure("protocol", "The server's tools/list pages loop")
            seen.add(cursor)
        raise McpFailure("protocol", f"The server's tools/list has more than {MAX_PAGES} pages")

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.connect()
        try:
            return self._exchange(method, params)
        except _SessionExpired:
            # The server forgot our session (restart, idle expiry): one fresh handshake, one retry.
            self._state = _State()
            self._initialize()
            try:
                return self._exchange(method, params)
            except _SessionExpired:
                raise McpFailure("protocol", "The server expired its session twice in a row") from None

    def close(self) -> None:
        """End a handshake-era session (spec: clients SHOULD DELETE it); failures do not matter."""
        session_id, self._state.session_id = self._state.session_id, None
        if session_id is None:
            return
        try:
            self._http.request("DELETE", self.url, headers=self._headers(None, None, session_id), max_bytes=4096, timeout=2.0)
        except OutboundError:
            pass

    def __enter__(self) -> McpClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- negotiation ---------------------------------------------------------------------------

    def _discover(self) -> bool:
        """True when the server speaks the modern revision. Any answer that is not positive evidence
        (an HTTP 4xx, a JSON-RPC error, an odd result) falls back to the handshake, as the SDKs do;
        only a transport failure or an auth challenge ends the attempt."""
        try:
            result = self._rpc("server/discover", {}, MODERN_VERSION, None)
        except McpFailure as failure:
            if failure.kind in ("refused", "unavailable", "auth"):
                raise
            return False
        except _SessionExpired:
            return False
        versions = result.get("supportedVersions")
        if not isinstance(versions, list) or MODERN_VERSION not in versions:
            return False
        self._state = _State(MODERN_VERSION, None, _server_facts(result, result.get("_meta")))
        return True

    def _initialize(self) -> None:
        params = {"protocolVersion": HANDSHAKE_VERSIONS[0], "capabilities": {}, "clientInfo": CLIENT_INFO}
        try:
            result, response = self._rpc_with_response("initialize", params, None, None)
        except _SessionExpired:
            raise McpFailure("protocol", "The server refused to start a session (HTTP 404)") from None
        version = result.get("protocolVersion")
        if version not in HANDSHAKE_VERSIONS:
            # A server that answers with a version we never offered (or the modern one through the
            # handshake) would be spoken to in a dialect neither side agreed on.
            shown = str(version)[:40] if version is not None else "none"
            raise McpFailure("incompatible", f"The server answered with an unsupported protocol version ({shown})")
        session_id = response.headers.get("Mcp-Session-Id")
        if session_id is not None and (len(session_id) > MAX_SESSION_ID or not _HEADER_SAFE.match(session_id)):
            raise McpFailure("incompatible", "The server sent an invalid Mcp-Session-Id")
        self._state = _State(version, session_id, _server_facts(result, None))
        # The notification's answer (202, or anything) carries nothing we need; only reachability matters.
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"}, "notifications/initialized", None)

    # -- exchanges -----------------------------------------------------------------------------

    def _exchange(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        version = self._state.version
        name = params.get("name") if method == "tools/call" else None
        if version == MODERN_VERSION:
            return self._rpc(method, params, MODERN_VERSION, name)
        return self._rpc(method, params, None, name)

    def _rpc(self, method: str, params: dict[str, Any], modern: str | None, name: str | None) -> dict[str, Any]:
        return self._rpc_with_response(method, params, modern, name)[0]

    def _rpc_with_response(
        self, method: str, params: dict[str, Any], modern: str | None, name: str | None
    ) -> tuple[dict[str, Any], OutboundResponse]:
        self._next_id += 1
        request_id = self._next_id
        if modern is not None:
            meta = {_META_VERSION: modern, _META_CAPABILITIES: {}, _META_CLIENT_INFO: CLIENT_INFO}
            params = {**params, "_meta": {**params.get("_meta", {}), **meta}}
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        response = self._post(message, method, name, modern=modern)
        return _answer(response, request_id, method), response

    def _post(
        self, message: dict[str, Any], method: str, name: str | None, *, modern: str | None = None
    ) -> OutboundResponse:
        session_id = self._state.session_id if modern is None else None
        headers = self._headers(modern or self._state.version, method if modern else None, session_id)
        if modern and name is not None:
            headers["Mcp-Name"] = _header_value(name)
        try:
            response = self._http.request(
                "POST", self.url, headers=headers, json=message, max_bytes=self._max_bytes, timeout=self._timeout
            )
        except OutboundRefused as refused:
            raise McpFailure("refused", str(refused)) from None
        except OutboundTooLarge as too_large:
            raise McpFailure("protocol", str(too_large)) from None
        except OutboundError as failure:
            raise McpFailure("unavailable", str(failure)) from None
        if response.status in (401, 403):
            raise McpFailure(
                "auth",
                f"The server refused the request (HTTP {response.status}): it needs a valid token",
                challenge=response.headers.get("WWW-Authenticate", "")[:2000],
            )
        if response.status == 404 and session_id is not None:
            raise _SessionExpired()
        return response

    def _headers(self, version: str | None, method: str | None, session_id: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream"}
        if version is not None:
            headers["MCP-Protocol-Version"] = version
        if method is not None:
            headers["Mcp-Method"] = method
        if session_id is not None:
            headers["Mcp-Session-Id"] = session_id
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers


class _SessionExpired(Exception):
    """HTTP 404 to a request that carried a session id."""


def _server_facts(result: dict[str, Any], meta: Any) -> dict[str, Any]:
    info = result.get("serverInfo")
    if not isinstance(info, dict) and isinstance(meta, dict):
        info = meta.get("io.modelcontextprotocol/serverInfo")
    info = info if isinstance(info, dict) else {}
    instructions = result.get("instructions")
    return {
        "name": info.get("name") if isinstance(info.get("name"), str) else None,
        "title": info.get("title") if isinstance(info.get("title"), str) else None,
        "version": info.get("version") if isinstance(info.get("version"), str) else None,
        "instructions": instructions if isinstance(instructions, str) else None,
    }


# --- reading an answer ----------------------------------------------------------------------------


def _answer(response: OutboundResponse, request_id: int, method: str) -> dict[str, Any]:
    """The result of our request from a JSON or SSE answer; McpFailure for anything else."""
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "text/event-stream" and 200 <= response.status < 300:
        messages = list(_sse_messages(response.content))
    elif content_type.endswith("json") or content_type == "":
        if not response.content.strip():
            raise McpFailure("not_mcp", f"The server answered {method} with HTTP {response.status} and no body")
        messages = [_decode(response.content)]
    else:
        raise McpFailure("not_mcp", f"The server answered {method} with HTTP {response.status} ({content_type or 'no type'}), not JSON-RPC")
    for message in messages:
        if not isinstance(message, dict) or message.get("id") != request_id or "method" in message:
            continue  # notifications, server requests, other ids
        if message.get("jsonrpc") != "2.0":
            raise McpFailure("protocol", f"The server's answer to {method} is not JSON-RPC 2.0")
        error = message.get("error")
        if isinstance(error, dict):
            code = error.get("code") if isinstance(error.get("code"), int) else None
            text = str(error.get("message") or "no message")[:500]
            raise McpFailure("rpc", f"The server answered {method} with error {code}: {text}", rpc_code=code)
        result = message.get("result")
        if not isinstance(result, dict):
            raise McpFailure("protocol", f"The server's answer to {method} has no result object")
        return result
    if not 200 <= response.status < 300:
        raise McpFailure("not_mcp", f"The server answered {method} with HTTP {response.status}")
    raise McpFailure("not_mcp", f"The server's answer to {method} does not answer it")


def _decode(data: bytes) -> Any:
    try:
        value = parse_json(data)
    except ValueError as bad:
        # Too deep to parse is hostile, not merely "not MCP": the caller must not fall back quietly.
        kind = "protocol" if isinstance(bad, TooDeep) else "not_mcp"
        raise McpFailure(kind, f"The server did not answer with valid JSON ({str(bad)[:120]})") from None
    problem = _structure_problem(value, MAX_DEPTH)
    if problem:
        raise McpFailure("protocol", f"The server's answer {problem}")
    return value


def _sse_messages(body: bytes) -> list[Any]:
    """The JSON data of each event of a finished SSE body (events without data, e.g. priming events
    and comments, and events whose data is not JSON are skipped)."""
    messages: list[Any] = []
    data: list[str] = []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise McpFailure("not_mcp", "The server's event stream is not UTF-8") from None
    for line in [*text.splitlines(), ""]:
        if line == "":
            payload = "\n".join(data).strip()
            data = []
            if not payload:
                continue  # a priming event (an id for resumption, empty data)
            try:
                messages.append(_decode(payload.encode()))
            except McpFailure as failure:
                if failure.kind != "not_mcp":
                    raise
                # An event that is not JSON cannot be our answer; if none is, _answer says so.
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return messages
