"""Real MCP servers on loopback, built with the official Python SDK (`mcp`, a test dependency), and
small handwritten hostile ones.

`McpTestServer` runs an SDK `MCPServer` with the Streamable HTTP transport under uvicorn in a thread
on an ephemeral port. Options put ASGI layers in front of it: `handshake_only` answers a 2026-07-28
request as a server of the handshake era does (400: unsupported protocol version), `bearer` demands
a token (401 + WWW-Authenticate otherwise). Every request is recorded (method, headers, JSON body).

Run as a module (`python -m tests.mcp_servers`) it serves the same tools in a subprocess and prints
its URL: the `crash` tool then ends the process in the middle of a call.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel

MODERN = "2026-07-28"


class Sum(BaseModel):
    total: int


def build_server(name: str = "Loopback tools", page_size: int | None = None) -> MCPServer:
    server = MCPServer(name, version="3.1.4", instructions="Tools for tests.")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True, destructiveHint=False))
    def echo(text: str) -> str:
        """Echo the text back."""
        return f"echo: {text}"

    @server.tool(annotations=ToolAnnotations(destructiveHint=True))
    def add(a: int, b: int) -> Sum:
        """Add two integers."""
        return Sum(total=a + b)

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails with the reason."""
        raise ToolError(f"refused: {reason}")

    @server.tool()
    def crash() -> str:
        """Ends the server process in the middle of the call."""
        os._exit(3)

    for index in range(page_size or 0):  # many tools, to make the SDK page tools/list
        def numbered(n: int = index) -> str:
            return str(n)

        server.add_tool(numbered, name=f"tool_{index:03d}", description=f"Tool number {index}")
    return server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Seen:
    method: str
    headers: dict[str, str]
    body: Any


@dataclass
class McpTestServer:
    stateless: bool = True
    json_response: bool = True
    handshake_only: bool = False
    bearer: str | None = None
    oauth: Any = None  # an McpAuthorizationServer: tokens it issued are accepted, 401 points at it
    name: str = "Loopback tools"
    seen: list[Seen] = field(default_factory=list)

    __test__ = False

    def __post_init__(self) -> None:
        self.mcp = build_server(self.name)
        inner = self.mcp.streamable_http_app(stateless_http=self.stateless, json_response=self.json_response)
        self.port = _free_port()
        config = uvicorn.Config(self._front(inner), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._uvicorn.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the MCP test server did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.port}"

    def methods(self) -> list[str]:
        return [s.body.get("method") if isinstance(s.body, dict) else s.method for s in self.seen]

    def _front(self, inner: Any) -> Any:
        async def app(scope: dict, receive: Callable, send: Callable) -> None:
            if scope["type"] != "http":
                await inner(scope, receive, send)
                return
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            chunks = []
            more = True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = b"".join(chunks)
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            self.seen.append(Seen(scope["method"], headers, parsed))
            if self.oauth is not None and not self.oauth.accepts(headers.get("authorization", "")):
                challenge = f'Bearer resource_metadata="{self.oauth.origin}/.well-known/oauth-protected-resource/mcp"'
                await _plain(send, 401, b'{"error":"invalid_token"}', [(b"www-authenticate", challenge.encode())])
                return
            if self.bearer is not None and headers.get("authorization") != f"Bearer {self.bearer}":
                await _plain(send, 401, b'{"error":"invalid_token"}', [(b"www-authenticate", b'Bearer error="invalid_token"')])
                return
            if self.handshake_only and headers.get("mcp-protocol-version") == MODERN:
                # What servers of the handshake era answer to a version they do not know.
                await _plain(send, 400, b'{"jsonrpc":"2.0","id":"server-error","error":{"code":-32600,"message":"Bad Request: Unsupported protocol version"}}')
                return
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            await inner(scope, replay, send)

        return app

    def close(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)


async def _plain(send: Callable, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


# --- an authorization server for MCP (RFC 9728, 8414, 7591, 7636, 8707) -----------------------------


class McpAuthorizationServer:
    """Serves the protected resource metadata of `resource`, its own RFC 8414 metadata, dynamic
    registration, and a token endpoint that checks PKCE, `resource` and the registered client, and
    rotates refresh tokens. `issuer_override` makes its metadata lie about the issuer."""

    __test__ = False

    def __init__(self, issuer_override: str | None = None) -> None:
        from .sites import TestSite

        self.site = TestSite()
        self.resource = ""
        self.issuer_override = issuer_override
        self.registered: list[dict] = []
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (challenge, resource)
        self.valid_access: set[str] = set()
        self.current_refresh: str | None = None
        self.exchanges: list[dict] = []
        self._issued = 0
        routes = self.site.routes
        routes[("GET", "/.well-known/oauth-protected-resource/mcp")] = lambda *_: (200, {"resource": self.resource, "authorization_servers": [self.origin]})
        routes[("GET", "/.well-known/oauth-authorization-server")] = lambda *_: (200, {
            "issuer": self.issuer_override or self.origin,
            "authorization_endpoint": f"{self.origin}/authorize",
            "token_endpoint": f"{self.origin}/token",
            "registration_endpoint": f"{self.origin}/register",
            "code_challenge_methods_supported": ["S256"],
        })
        routes[("POST", "/register")] = self._register
        routes[("POST", "/token")] = self._token

    @property
    def origin(self) -> str:
        return self.site.origin

    def accepts(self, authorization: str) -> bool:
        return authorization.removeprefix("Bearer ") in self.valid_access

    def approve(self, authorization_url: str) -> str:
        from urllib.parse import parse_qs, urlsplit

        query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        assert query["code_challenge_method"] == "S256" and query["client_id"] == "dyn-1" and query["response_type"] == "code"
        code = f"code-{len(self.codes)}"
        self.codes[code] = (query["code_challenge"], query["resource"])
        return code

    def _register(self, site: Any, path: str, headers: dict, body: bytes) -> tuple:
        self.registered.append(json.loads(body))
        return 201, {"client_id": "dyn-1", "client_id_issued_at": int(time.time())}

    def _issue(self) -> dict:
        self._issued += 1
        access, refresh = f"mcp-at-{self._issued}", f"mcp-rt-{self._issued}"
        self.valid_access = {access}
        self.current_refresh = refresh
        return {"access_token": access, "refresh_token": refresh, "expires_in": 3600, "token_type": "Bearer"}

    def _token(self, site: Any, path: str, headers: dict, body: bytes) -> tuple:
        import base64
        import hashlib
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        self.exchanges.append(form)
        if form.get("client_id") != "dyn-1" or form.get("resource") != self.resource:
            return 400, {"error": "invalid_target"}
        if form.get("grant_type") == "authorization_code":
            challenge, resource = self.codes.pop(form.get("code", ""), (None, None))
            computed = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest()).decode().rstrip("=")
            if challenge != computed or resource != self.resource:
                return 400, {"error": "invalid_grant"}
            return 200, self._issue()
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token") == self.current_refresh:
            return 200, self._issue()
        return 400, {"error": "invalid_grant"}

    def close(self) -> None:
        self.site.close()


# --- hostile servers --------------------------------------------------------------------------------


class HostileServer:
    """Answers every POST with `answer(body) -> (status, headers, bytes | iterator of bytes)`."""

    __test__ = False

    def __init__(self, answer: Callable[[dict], tuple[int, dict[str, str], Any]]) -> None:
        hostile = self
        self.requests: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    message = json.loads(body)
                except ValueError:
                    message = {}
                hostile.requests.append({**message, "headers": {k.lower(): v for k, v in self.headers.items()}})
                status, headers, payload = answer(message if isinstance(message, dict) else {})
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                try:
                    if isinstance(payload, bytes):
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                    else:  # a stream: chunked, for as long as the iterator gives
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for chunk in payload:
                            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                            self.wfile.flush()
                        self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_DELETE = do_GET  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/mcp"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def rpc(message: dict, result: Any) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "result": result}).encode()


if __name__ == "__main__":  # a server in a process of its own: `crash` ends it mid-call
    port = _free_port()
    app = build_server("Mortal tools").streamable_http_app(stateless_http=True, json_response=True)
    print(f"http://127.0.0.1:{port}/mcp", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    sys.exit(0)
