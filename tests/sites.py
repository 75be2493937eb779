"""Real HTTP sites on loopback for vault, chat and run tests.

A `TestSite` serves a manifest (either call shape) and answers tool calls,
optionally only with the right bearer token. It records every request, so
tests can check what Conduit sent (and what it never sent).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Handler = Callable[["TestSite", str, dict[str, str], bytes], tuple[int, Any]]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def tool(name: str, description: str = "A tool", **properties: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "input_schema": {"type": "object", "properties": properties or {"q": {"type": "string"}}},
    }


@dataclass
class TestSite:
    """A site on 127.0.0.1:<free port>. `manifest` may be a dict, a callable of the site, raw bytes, or None."""

    manifest: Any = None
    manifest_path: str = "/.well-known/servio.json"
    required_token: str | None = None
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    __test__ = False  # not a pytest test class

    def __post_init__(self) -> None:
        site = self

        class RequestHandler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer()

            def do_POST(self) -> None:  # noqa: N802
                self._answer()

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                site.requests.append(Recorded(self.command, self.path, headers, body))
                status, payload = site.answer(self.command, self.path, headers, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # Conduit hangs up on an oversized answer, as it should

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if self.required_token and headers.get("authorization") != f"Bearer {self.required_token}":
            return 401, {"error": "unauthorized"}
        if method == "GET" and path == self.manifest_path and self.manifest is not None:
            manifest = self.manifest(self) if callable(self.manifest) else self.manifest
            return 200, manifest
        handler = self.routes.get((method, path))
        if handler is not None:
            return handler(self, path, headers, body)
        return 404, {"error": "not found"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def rest_manifest(site: TestSite, tools: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """The documented shape: server.url, tools called at /tools/{name}."""
    return {
        "name": "Test Site",
        "version": "1.0.0",
        "description": "A site for tests",
        "server": {"url": site.origin},
        "tools": tools or [tool("search"), tool("posts.list")],
        **extra,
    }


def mcp_manifest(site: TestSite, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The CMS plugins' shape: usage.tools_endpoint with {"name", "arguments"}, tools under usage."""
    return {
        "name": "CMS Site",
        "version": "2.1",
        "usage": {"tools_endpoint": f"{site.origin}/wp-json/servio/v1/tools", "body_format": "mcp", "tools": tools or [tool("xenforo.searchThreads")]},
    }
