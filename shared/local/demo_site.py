"""`make demo-site` (`python -m shared.local.demo_site`): a tiny site on loopback to connect to the
local stack, as in docs/QUICKSTART.md.

It publishes a manifest (the Servio / WebMCP format, API.md §6) at `/.well-known/servio.json`
with two tools, and answers their calls at `POST /tools/<name>` (the documented call shape) only
with `Authorization: Bearer demo-token`. Standard library only; loopback only.

    DEMO_SITE_PORT=8765 (default)   →   http://127.0.0.1:8765
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_PORT = 8765
TOKEN = "demo-token"

PRODUCTS = [
    {"sku": "MUG-1", "name": "Blue mug", "priceUsd": 12},
    {"sku": "MUG-2", "name": "Red mug", "priceUsd": 12},
    {"sku": "TEE-1", "name": "Conduit t-shirt", "priceUsd": 20},
]
ORDERS = {1: {"orderId": 1, "status": "shipped", "items": ["MUG-1"]}, 2: {"orderId": 2, "status": "processing", "items": ["TEE-1", "MUG-2"]}}


def manifest(origin: str) -> dict[str, Any]:
    return {
        "name": "Demo shop",
        "version": "1.0.0",
        "description": "A loopback demo site for the Conduit quickstart",
        "server": {"url": origin},
        "auth": {"type": "bearer"},
        "tools": [
            {
                "name": "search_products",
                "description": "Search the shop's products by name",
                "input_schema": {
                    "type": "object",
                    "properties": {"q": {"type": "string", "description": "words to look for"}},
                    "required": ["q"],
                    "additionalProperties": False,
                },
            },
            {
                "name": "get_order",
                "description": "An order's status and items",
                "input_schema": {
                    "type": "object",
                    "properties": {"order_id": {"type": "integer", "minimum": 1}},
                    "required": ["order_id"],
                    "additionalProperties": False,
                },
            },
        ],
    }


def call(tool: str, arguments: dict[str, Any]) -> tuple[int, Any]:
    if tool == "search_products":
        words = str(arguments.get("q", "")).lower().split()
        return 200, {"products": [p for p in PRODUCTS if all(word in p["name"].lower() for word in words)]}
    if tool == "get_order":
        order = ORDERS.get(arguments.get("order_id"))  # type: ignore[arg-type]
        return (200, order) if order else (404, {"error": "no such order"})
    return 404, {"error": f"no tool named {tool}"}


class _Handler(BaseHTTPRequestHandler):
    server_version = "ConduitDemoSite/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        if not getattr(self.server, "quiet", False):
            sys.stderr.write(f"demo-site: {self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/.well-known/servio.json":
            host, port = self.server.server_address[:2]
            self._send(200, manifest(f"http://{host}:{port}"))
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 64 * 1024))
        if not self.path.startswith("/tools/"):
            self._send(404, {"error": "not found"})
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"error": "a bearer token is required"})
            return
        try:
            arguments = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {"error": "the body is not JSON"})
            return
        self._send(*call(self.path.removeprefix("/tools/"), arguments if isinstance(arguments, dict) else {}))


class DemoSite(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int = DEFAULT_PORT, quiet: bool = False) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.quiet = quiet

    @property
    def origin(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def serve_in_background(self) -> DemoSite:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    port = int(os.environ.get("DEMO_SITE_PORT", str(DEFAULT_PORT)))
    try:
        site = DemoSite(port)
    except OSError as error:
        print(f"error: the demo site cannot listen on 127.0.0.1:{port}: {error.strerror}; try DEMO_SITE_PORT={port + 1}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _stop)
    print(f"Demo site on {site.origin}  (manifest: {site.origin}/.well-known/servio.json; token: {TOKEN}; pid {os.getpid()})", flush=True)
    try:
        site.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        site.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
