"""Platform overhead of one chat tool call, against calling the same loopback tool directly.

Both go over HTTP on loopback. The chat path is the whole platform as `make
dev` runs it: authentication, rate limit, session and history reads, two
local:echo model turns, credits, the outgoing-limit counter, token
decryption (KMS), the guarded client, the tool call itself, and saving the
exchange. Reported as medians and their ratio.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx

from bench.platform import bench_platform


def _median_ms(call, runs: int) -> float:
    call()  # warm
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples) * 1000, 2)


def measure(runs: int = 30) -> dict[str, Any]:
    with bench_platform() as platform:
        with httpx.Client(base_url=platform.url, timeout=60) as api, httpx.Client(timeout=60) as direct:
            user = platform.user(api, "bench@example.com")
            token = api.post("/sessions", json={}, headers=user["headers"]).json()["sessionToken"]
            chat_body = {"sessionToken": token, "message": f"call {user['tool']} {{}}"}

            def chat() -> None:
                response = api.post("/chat", json=chat_body, headers=user["headers"])
                assert response.status_code == 200, response.text

            def tool() -> None:
                assert direct.post(f"{platform.site_origin}/tools/ping", json={}).status_code == 200

            chat_ms, tool_ms = _median_ms(chat, runs), _median_ms(tool, runs)
    return {"chat_tool_call_ms": chat_ms, "direct_tool_call_ms": tool_ms, "overhead_ratio": round(chat_ms / tool_ms, 1), "runs": runs}
