"""p50/p95 latency of the local stack for the main operations, under 1 and 8 concurrent clients.

Each client is its own user (its own account, session and agent), so clients
contend for the platform (the emulator's lock, the functions' workers, the
machine's cores), not for one account's rows. A run start is timed until its
202; the run then finishes untimed before that client starts the next.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench.platform import BenchPlatform, bench_platform

CONCURRENCY = (1, 8)
REQUESTS_PER_CLIENT = {1: 30, 8: 12}


def _client_operations(platform: BenchPlatform, number: int) -> dict[str, Callable[[], None]]:
    """Each operation of one client; calling one makes one timed request (and untimed cleanup)."""
    api = httpx.Client(base_url=platform.url, timeout=120)
    user = platform.user(api, f"latency{number}-{time.monotonic_ns()}@example.com")
    headers = user["headers"]
    token = api.post("/sessions", json={}, headers=headers).json()["sessionToken"]
    agent = api.post("/agents", json={"name": "Bench", "systemPrompt": "Say hi"}, headers=headers).json()["id"]

    def expect(response: httpx.Response, status: int) -> httpx.Response:
        assert response.status_code == status, response.text
        return response

    def run_start() -> float:
        started = time.perf_counter()
        run = expect(api.post(f"/agents/{agent}/runs", json={}, headers=headers), 202).json()
        elapsed = time.perf_counter() - started
        while api.get(f"/runs/{run['id']}", headers=headers).json()["status"] == "running":
            time.sleep(0.05)
        return elapsed

    return {
        "GET /agents": lambda: expect(api.get("/agents", headers=headers), 200),
        "POST /chat (echo)": lambda: expect(api.post("/chat", json={"sessionToken": token, "message": "hello"}, headers=headers), 200),
        "POST /chat (one tool call)": lambda: expect(
            api.post("/chat", json={"sessionToken": token, "message": f"call {user['tool']} {{}}"}, headers=headers), 200
        ),
        "POST /agents/{id}/runs": run_start,
    }


def _timed(operation: Callable[[], Any]) -> float:
    started = time.perf_counter()
    measured = operation()
    return measured if isinstance(measured, float) else time.perf_counter() - started


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(operations: tuple[str, ...] | None = None, concurrency_levels: tuple[int, ...] = CONCURRENCY) -> list[dict[str, Any]]:
    """Every operation (or only `operations`) at each of `concurrency_levels`."""
    rows = []
    with bench_platform() as platform:
        with ThreadPoolExecutor(max_workers=max(concurrency_levels)) as pool:
            clients = list(pool.map(lambda n: _client_operations(platform, n), range(max(concurrency_levels))))
            for name in clients[0]:
                if operations is not None and name not in operations:
                    continue
                for concurrency in concurrency_levels:
                    count = REQUESTS_PER_CLIENT[concurrency]
                    # Warm, all clients at once: a worker per concurrent client exists before the timed
                    # requests, as in a Lambda that has served this concurrency (one after the other,
                    # one worker served every warm-up and the timed run paid 7 cold starts).
                    list(pool.map(lambda client: _timed(client[name]), clients[:concurrency]))

                    def client_samples(client: dict[str, Callable[[], Any]]) -> list[float]:
                        return [_timed(client[name]) for _ in range(count)]

                    started = time.perf_counter()
                    samples = [s for batch in pool.map(client_samples, clients[:concurrency]) for s in batch]
                    wall = time.perf_counter() - started
                    rows.append(
                        {
                            "operation": name,
                            "clients": concurrency,
                            "requests": len(samples),
                            "p50_ms": round(statistics.median(samples) * 1000, 1),
                            "p95_ms": round(_percentile(samples, 0.95) * 1000, 1),
                            "requests_per_second": round(len(samples) / wall, 1),
                        }
                    )
    return rows
