"""Platform overhead of one chat tool call, against calling the same loopback tool directly.

Both go over HTTP on loopback. The chat path is the whole platform as `make
dev` runs it: authentication, rate limit, session and history reads, two
local:echo model turns, credits, the outgoing-limit counter, token
decryption (KMS), the guarded client, the tool call itself, and saving the
exchange. Reported as medians and their ratio.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
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


def _median_ms(call, runs: int) -> float:
    call()  # warm
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples) * 1000, 2)


def measure(runs: int = 30) -> dict[str, Any]:
    tiers = json.loads((ROOT / "shared" / "tiers.json").read_text())
    tiers["outgoingCallsPerMinutePerDomain"] = 100_000  # the benchmark calls one domain many times
    tiers["tiers"]["free"]["requestsPerMinute"] = 100_000
    with tempfile.TemporaryDirectory() as scratch:
        tiers_file = Path(scratch) / "tiers.json"
        tiers_file.write_text(json.dumps(tiers))
        os.environ["TIERS_FILE"] = str(tiers_file)  # a knob, passed to the functions like any other
        from shared.local.stack import LocalStack

        stack = LocalStack(port=0, quiet=True).start().serve_in_background()
        site = ThreadingHTTPServer(("127.0.0.1", 0), _Tool)
        threading.Thread(target=site.serve_forever, daemon=True).start()
        origin = f"http://127.0.0.1:{site.server_address[1]}"
        try:
            with httpx.Client(base_url=stack.url, timeout=60) as api, httpx.Client(timeout=60) as direct:
                session = api.post("/auth/register", json={"email": "bench@example.com", "password": "bench password"}).json()
                headers = {"Authorization": f"Bearer {session['accessToken']}"}
                api.post("/auth/accept-terms", json={}, headers=headers)
                tool_name = api.post("/vault/sites", json={"url": origin, "token": "t"}, headers=headers).json()["tools"][0]["prefixedName"]
                token = api.post("/sessions", json={}, headers=headers).json()["sessionToken"]
                chat_body = {"sessionToken": token, "message": f"call {tool_name} {{}}"}

                def chat() -> None:
                    response = api.post("/chat", json=chat_body, headers=headers)
                    assert response.status_code == 200, response.text

                def tool() -> None:
                    assert direct.post(f"{origin}/tools/ping", json={}).status_code == 200

                chat_ms, tool_ms = _median_ms(chat, runs), _median_ms(tool, runs)
        finally:
            site.shutdown()
            stack.stop()
            os.environ.pop("TIERS_FILE", None)
    return {"chat_tool_call_ms": chat_ms, "direct_tool_call_ms": tool_ms, "overhead_ratio": round(chat_ms / tool_ms, 1), "runs": runs}
