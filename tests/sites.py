"""Real HTTP sites on loopback for vault, chat and run tests.

A `TestSite` serves a manifest (either call shape) and answers tool calls,
optionally only with the right bearer token. It records every request, so
tests can check what Conduit sent (and what it never sent).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

# A route answers (status, body) or (status, body, response headers).
Handler = Callable[["TestSite", str, dict[str, str], bytes], tuple[Any, ...]]


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops handshakes under load: 1-7 s retries (see shared/local/gateway.py)


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

        self.server = _Server(("127.0.0.1", 0), RequestHandler)
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


def named_manifest(site: TestSite, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
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


# --- the real CMS plugins (API.md §11) ------------------------------------------------------------

CORPUS_DIR = Path(os.environ.get("CONDUIT_MANIFEST_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus" / "manifests"))
PLACEHOLDER_ORIGINS = (
    "https://forum.example.com",
    "https://blog.example.net",
    "https://drupal.example.org",
    "https://myapp.example.com",
    "https://devcommunity.example.com",
)


@dataclass(frozen=True)
class Plugin:
    """Where a plugin publishes its manifest and how it routes tool calls (the corpus README).
    `calls`: "named" (POST `at` with {"name", "arguments"}), "path" (POST `at` + tool name, the
    arguments as body) or "rest_route" (POST /?rest_route=`at` + tool name, plain permalinks)."""

    manifest_path: str
    calls: str
    at: str


PLUGINS = {
    "xenforo-ai-connect-1.2.27.json": Plugin("/api/aiconnect-manifest", "named", "/api/aiconnect-tools"),
    "wordpress-webmcp-bridge-0.5.7.json": Plugin("/wp-json/goldt-webmcp-bridge/v1/manifest", "path", "/wp-json/goldt-webmcp-bridge/v1/tools/"),
    "wordpress-webmcp-bridge-0.5.7-plain-permalinks.json": Plugin(
        "/?rest_route=/goldt-webmcp-bridge/v1/manifest", "rest_route", "/goldt-webmcp-bridge/v1/tools/"
    ),
    "wordpress-ai-connect-0.1.0.json": Plugin("/wp-json/ai-connect/v1/manifest", "path", "/wp-json/ai-connect/v1/tools/"),
    "drupal-ai-connect-1.0.0.json": Plugin("/api/ai-connect/v1/manifest", "path", "/api/ai-connect/v1/tools/"),
    # The format's own examples publish nowhere in particular: served at the first standard path.
    "docs-example-adding-a-site.json": Plugin("/.well-known/servio.json", "path", "/api/servio/tools/"),
    "docs-example-manifest-format.json": Plugin("/.well-known/servio.json", "path", "/api/servio/tools/"),
}


def corpus_manifest(name: str, origin: str) -> dict[str, Any]:
    """A corpus document with its placeholder origin replaced by `origin`."""
    text = (CORPUS_DIR / name).read_text()
    for placeholder in PLACEHOLDER_ORIGINS:
        text = text.replace(placeholder, origin)
    return json.loads(text)


@dataclass
class PluginCall:
    tool: str
    arguments: Any
    authorization: str | None


class PluginSite(TestSite):
    """A loopback site running one CMS plugin: it publishes the corpus manifest where the plugin
    does, and routes tool calls as the plugin does. Anything the plugin would not handle (XenForo's
    `server.url`, a tool name it does not have, a GET of a tool) is 404; a wrong token is 401."""

    def __init__(self, corpus_name: str, token: str | None = "plugin-token", **options: Any) -> None:
        self.corpus_name = corpus_name
        self.plugin = PLUGINS[corpus_name]
        self.token = token
        self.calls: list[PluginCall] = []
        super().__init__(manifest=lambda site: corpus_manifest(corpus_name, site.origin), manifest_path=self.plugin.manifest_path, **options)
        self.tool_names = [tool["name"] for tool in corpus_manifest(corpus_name, self.origin)["tools"]]

    __test__ = False

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[Any, ...]:
        if (method, path) in self.routes or method != "POST":
            return super().answer(method, path, headers, body)
        routed = self._route(path, body)
        if routed is None:
            return 404, {"code": "rest_no_route", "message": "No route was found matching the URL and request method."}
        tool_name, arguments = routed
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"code": "unauthorized"}
        self.calls.append(PluginCall(tool_name, arguments, headers.get("authorization")))
        return 200, {"handledBy": self.corpus_name, "tool": tool_name, "arguments": arguments}

    def _route(self, path: str, body: bytes) -> tuple[str, Any] | None:
        from urllib.parse import parse_qs, unquote, urlsplit

        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return None
        parts = urlsplit(path)
        plugin = self.plugin
        if plugin.calls == "named":
            if parts.path != plugin.at or parts.query or not isinstance(payload, dict):
                return None
            tool_name, arguments = payload.get("name"), payload.get("arguments")
        elif plugin.calls == "path":
            if parts.query or not parts.path.startswith(plugin.at):
                return None
            tool_name, arguments = unquote(parts.path[len(plugin.at):]), payload
        else:  # rest_route: WordPress reads the route from the query
            route = parse_qs(parts.query).get("rest_route", [""])[0]
            if parts.path != "/" or not route.startswith(plugin.at):
                return None
            tool_name, arguments = route[len(plugin.at):], payload
        if tool_name not in self.tool_names:
            return None
        return tool_name, arguments


class OobOAuthPlugin:
    """The plugins' OAuth side: the authorization page shows the code to the person (out-of-band);
    only the out-of-band redirect and the manifest's registered clients are accepted; PKCE S256 is
    required; refresh tokens rotate (a spent one is refused)."""

    def __init__(self, site: PluginSite, registered_clients: dict[str, str]) -> None:
        self.site = site
        self.registered_clients = registered_clients
        self.codes: dict[str, dict[str, str]] = {}
        self.access: set[str] = set()
        self.refresh: str | None = None
        self.spent: list[str] = []
        self.exchanges: list[str] = []
        self.authorizations: list[dict[str, str]] = []
        self._issued = 0
        self._lock = threading.Lock()
        base = site.manifest

        def manifest(s: TestSite) -> dict[str, Any]:
            document = base(s)
            document["auth"]["registered_clients"] = registered_clients
            return document

        site.manifest = manifest
        auth = corpus_manifest(site.corpus_name, site.origin)["auth"]
        from urllib.parse import urlsplit

        self.authorize_path = urlsplit(auth["authorization_url"]).path
        token_url = urlsplit(auth["token_url"])
        token_path = token_url.path + (f"?{token_url.query}" if token_url.query else "")
        site.routes[("POST", token_path)] = self._token
        site.token = None  # tokens are checked here, against what was issued
        site.answer = self._guarded(site.answer)  # type: ignore[method-assign]

    def _guarded(self, answer: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
        def guarded(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[Any, ...]:
            if method == "POST" and (method, path) not in self.site.routes:
                token = headers.get("authorization", "").removeprefix("Bearer ")
                if token not in self.access:
                    return 401, {"error": "invalid_token"}
            return answer(method, path, headers, body)

        return guarded

    def authorize(self, authorization_url: str) -> str:
        """The person opens the authorization page and approves; the page shows the code."""
        from urllib.parse import parse_qs, urlsplit

        query = {key: values[0] for key, values in parse_qs(urlsplit(authorization_url).query).items()}
        self.authorizations.append(query)
        if query.get("client_id") not in self.registered_clients:
            raise AssertionError(f"unregistered client {query.get('client_id')!r}")
        if query.get("redirect_uri") != "urn:ietf:wg:oauth:2.0:oob":
            raise AssertionError(f"redirect {query.get('redirect_uri')!r} refused: only the out-of-band one is accepted")
        assert query["code_challenge_method"] == "S256" and query["response_type"] == "code"
        code = f"oob-code-{len(self.codes)}"
        self.codes[code] = query
        return code

    def revoke_access(self) -> None:
        self.access = set()

    def _issue(self) -> dict[str, Any]:
        self._issued += 1
        access, refresh = f"oob-at-{self._issued}", f"oob-rt-{self._issued}"
        self.access = {access}
        if self.refresh:
            self.spent.append(self.refresh)
        self.refresh = refresh
        return {"access_token": access, "refresh_token": refresh, "expires_in": 3600, "token_type": "Bearer"}

    def _token(self, site: TestSite, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        import base64
        import hashlib
        from urllib.parse import parse_qs

        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        with self._lock:
            self.exchanges.append(form.get("grant_type", ""))
            if form.get("client_id") not in self.registered_clients:
                return 401, {"error": "invalid_client"}
            if form.get("grant_type") == "authorization_code":
                approved = self.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                if approved is None or computed != approved["code_challenge"] or form.get("client_id") != approved["client_id"]:
                    return 400, {"error": "invalid_grant"}
                if form.get("redirect_uri") != "urn:ietf:wg:oauth:2.0:oob":
                    return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
                return 200, self._issue()
            if form.get("grant_type") == "refresh_token":
                if form.get("refresh_token") != self.refresh:
                    return 400, {"error": "invalid_grant"}
                return 200, self._issue()
        return 400, {"error": "unsupported_grant_type"}
