"""The added latency of one MCP tool call made the way Conduit makes it, against a bare tools/call.

Both hit the same SDK server on loopback (tests/mcp_servers.py), one per protocol generation:
- modern (2026-07-28, stateless, JSON answers): Conduit's call is `mcp_sites.call` (the guarded
  client: URL and address checks, connect to the checked address, capped read, then result
  handling); the direct call is one httpx POST of the same JSON-RPC request on a kept-alive
  connection;
- handshake era (2025-11-25, stateful, SSE answers): Conduit opens a session per invocation
  (initialize, notifications/initialized, tools/call, DELETE), because nothing is held between
  Lambda invocations; the direct call is one tools/call inside a session opened once beforehand.
The difference of the medians is what Conduit adds to one call (token, credits and the outgoing
limit are not included: they are the same for every tool and measured by chat_overhead.py).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "conduit"))
os.environ.setdefault("LOCAL_MODE", "true")


def _medians_ms(first, second, runs: int) -> tuple[float, float]:
    """Interleaved, so load from other processes on the machine falls on both alike."""
    first(), second()  # warm
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for call, into in ((first, samples[0]), (second, samples[1])):
            started = time.perf_counter()
            call()
            into.append(time.perf_counter() - started)
    return round(statistics.median(samples[0]) * 1000, 2), round(statistics.median(samples[1]) * 1000, 2)


def measure(runs: int = 50) -> dict[str, Any]:
    import logging

    from conduit.vault import mcp_sites
    from conduit.vault.mcp_client import CLIENT_INFO, HANDSHAKE_VERSIONS, MODERN_VERSION
    from conduit.net.outbound import GuardedClient
    from tests.mcp_servers import McpTestServer

    for name in ("mcp", "httpx"):  # not a line per request of the SDK's server and client
        logging.getLogger(name).setLevel(logging.WARNING)
    rows = []
    cases = [
        ("2026-07-28, JSON", {"stateless": True, "json_response": True}, MODERN_VERSION),
        ("2025-11-25, SSE, session", {"stateless": False, "json_response": False, "handshake_only": True}, HANDSHAKE_VERSIONS[0]),
    ]
    for label, options, version in cases:
        server = McpTestServer(**options)
        try:
            site = {"domain": server.domain, "callTarget": server.url, "mcpProtocolVersion": version}
            guarded = GuardedClient(allow_loopback=True, timeout=10)

            def conduit() -> None:
                assert mcp_sites.call(site, "add", {"a": 1, "b": 2}, None, guarded) == {"total": 3}

            with httpx.Client(timeout=10) as http:
                headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": version}
                if version != MODERN_VERSION:  # one session, opened once
                    init = http.post(server.url, headers=headers, json={"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                     "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": CLIENT_INFO}})
                    headers["Mcp-Session-Id"] = init.headers["Mcp-Session-Id"]
                    http.post(server.url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
                    params: dict[str, Any] = {"name": "add", "arguments": {"a": 1, "b": 2}}
                else:
                    headers.update({"Mcp-Method": "tools/call", "Mcp-Name": "add"})
                    params = {"name": "add", "arguments": {"a": 1, "b": 2}, "_meta": {
                        "io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}}}
                body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}

                def direct() -> None:
                    response = http.post(server.url, headers=headers, json=body)
                    assert response.status_code == 200 and '"total":3' in response.text.replace(" ", ""), response.text

                direct_ms, conduit_ms = _medians_ms(direct, conduit, runs)
            rows.append({"server": label, "direct_ms": direct_ms, "conduit_ms": conduit_ms,
                         "added_ms": round(conduit_ms - direct_ms, 2), "runs": runs})
        finally:
            server.close()
    return {"rows": rows}


if __name__ == "__main__":
    for row in measure()["rows"]:
        print(row)
