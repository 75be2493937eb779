"""The local stack as the benchmarks use it: `make dev`'s platform with limits raised (a tiers
file copy passed through TIERS_FILE, a knob like any other) and a loopback site with one tool."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


class _Tool(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the manifest
        origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        tool = {"name": "ping", "description": "Answers pong", "input_schema": {"type": "object"}}
        self._json({"name": "Bench", "version": "1", "server": {"url": origin}, "tools": [tool]})

    def do_POST(self) -> None:  # noqa: N802 - the tool
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json({"pong": True})

    def _json(self, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class BenchPlatform:
    url: str
    site_origin: str

    def user(self, client: httpx.Client, email: str) -> dict[str, Any]:
        """A registered user who accepted the terms, with the site connected: headers and tool name."""
        session = client.post("/auth/register", json={"email": email, "password": "bench password"}).json()
        headers = {"Authorization": f"Bearer {session['accessToken']}"}
        client.post("/auth/accept-terms", json={}, headers=headers)
        site = client.post("/vault/sites", json={"url": self.site_origin, "token": "t"}, headers=headers).json()
        return {"headers": headers, "tool": site["tools"][0]["prefixedName"], "account": session["user"]["id"]}


@contextmanager
def bench_platform(pricing: dict[str, Any] | None = None) -> Iterator[BenchPlatform]:
    """The local stack with high limits; `pricing` replaces the tiers file's pricing block."""
    tiers = json.loads((ROOT / "shared" / "tiers.json").read_text())
    if pricing is not None:
        tiers["pricing"] = pricing
    tiers["outgoingCallsPerMinutePerDomain"] = 1_000_000  # the benchmarks call one domain many times
    tiers["unauthenticatedRequestsPerMinute"] = 1_000_000
    tiers["signupCredits"] = 1_000_000
    tiers["tiers"]["free"].update(requestsPerMinute=1_000_000, maxAgents=None)
    with tempfile.TemporaryDirectory() as scratch:
        tiers_file = Path(scratch) / "tiers.json"
        tiers_file.write_text(json.dumps(tiers))
        os.environ["TIERS_FILE"] = str(tiers_file)
        from shared.local.stack import LocalStack

        stack = LocalStack(port=0, quiet=True).start().serve_in_background()
        site = ThreadingHTTPServer(("127.0.0.1", 0), _Tool)
        threading.Thread(target=site.serve_forever, daemon=True).start()
        try:
            yield BenchPlatform(url=stack.url, site_origin=f"http://127.0.0.1:{site.server_address[1]}")
        finally:
            site.shutdown()
            stack.stop()
            os.environ.pop("TIERS_FILE", None)
