"""Real HTTP sites on loopback for vault, chat and run tests.

A `TestSite` serves a manifest (either call shape) and answers tool calls,
optionally only with the right bearer token. It records every request, so
tests can check what Conduit sent (and what it never sent).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

# A route answers (status, body) or (status, body, response headers).
Handler = Callable[["TestSite", str, dict[str, str], bytes], tuple[Any, ...]]


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
                status, payload, *extra = site.answer(self.command, self.path, headers, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in (extra[0] if extra else {}).items():
                        self.send_header(name, value)
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

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[Any, ...]:
        if self.required_token and headers.get("authorization") != f"Bearer {self.required_token}":
            return 401, {"error": "unauthorized"}
        handler = self.routes.get((method, path))
        if handler is not None:
            return handler(self, path, headers, body)
        if method == "GET" and path == self.manifest_path and self.manifest is not None:
            manifest = self.manifest(self) if callable(self.manifest) else self.manifest
            return 200, manifest
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


class OAuthServer:
    """The OAuth side of a site: checks the PKCE verifier against the challenge, rotates refresh
    tokens (a spent one is refused), and counts exchanges. `site.routes` gets its endpoints."""

    def __init__(self, access_token_seconds: int = 3600, client_id: str = "conduit-client") -> None:
        self.access_token_seconds = access_token_seconds
        self.client_id = client_id
        self.challenges: dict[str, str] = {}  # code -> challenge the user "approved"
        self.valid_access: set[str] = set()
        self.current_refresh: str | None = None
        self.exchanges: list[str] = []  # grant types, in order
        self.refuse_refresh = False
        self._issued = 0
        self._lock = threading.Lock()

    def manifest(self, site: TestSite) -> dict[str, Any]:
        return {
            "name": "OAuth Site",
            "version": "1.0",
            "server": {"url": site.origin},
            "auth": {
                "type": "oauth2",
                "authorization_url": f"{site.origin}/oauth/authorize",
                "token_url": f"{site.origin}/oauth/token",
                "scopes": {"read": "Read", "write": "Write"},
                "registered_clients": [self.client_id],
            },
            "tools": [tool("whoami")],
        }

    def approve(self, authorization_url: str) -> str:
        """What the user's browser would do: approve, and get a code bound to the challenge."""
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(authorization_url).query)
        assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [self.client_id]
        code = f"code-{len(self.challenges)}"
        self.challenges[code] = query["code_challenge"][0]
        return code

    def install(self, site: TestSite) -> TestSite:
        site.manifest = self.manifest
        site.routes[("POST", "/oauth/token")] = self._token
        site.routes[("POST", "/tools/whoami")] = self._whoami
        return site

    def _issue(self) -> dict[str, Any]:
        self._issued += 1
        access, refresh = f"at-{self._issued}", f"rt-{self._issued}"
        self.valid_access = {access}  # older access tokens stop working
        self.current_refresh = refresh
        return {"access_token": access, "refresh_token": refresh, "expires_in": self.access_token_seconds, "token_type": "Bearer"}

    def _token(self, site: TestSite, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        import base64
        import hashlib
        from urllib.parse import parse_qs

        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        with self._lock:
            self.exchanges.append(form.get("grant_type", ""))
            if form.get("client_id") != self.client_id:
                return 400, {"error": "invalid_client"}
            if form.get("grant_type") == "authorization_code":
                challenge = self.challenges.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                if challenge is None or computed != challenge:
                    return 400, {"error": "invalid_grant"}
                return 200, self._issue()
            if form.get("grant_type") == "refresh_token":
                time.sleep(0.2)  # a slow endpoint widens the window for concurrent refreshes
                if self.refuse_refresh or form.get("refresh_token") != self.current_refresh:
                    return 400, {"error": "invalid_grant"}
                return 200, self._issue()
        return 400, {"error": "unsupported_grant_type"}

    def _whoami(self, site: TestSite, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.valid_access:
            return 401, {"error": "invalid_token"}
        return 200, {"token": token}
