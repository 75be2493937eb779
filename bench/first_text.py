"""Streaming latency: from the provider's first byte to the client's first `text` event.

A loopback OpenAI-compatible provider (the local stack's OPENAI_BASE_URL) answers each streamed
chat completion by sending its headers and the first text delta at once, noting the time, and
then holds the rest of its answer until the client has seen that text: the interval measured is
only what the platform adds on the way (the guarded client reading the stream, the SSE parse,
the chat's `text` event, the worker's pipe to the local gateway, the gateway's write, the
client's parse), not the model's writing. Timestamps are taken in this process (the provider and
the client both live here) with `time.perf_counter`. Warm: one exchange first, untimed.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock
from typing import Any

import httpx

from bench.latency import _percentile
from bench.platform import bench_platform

MODEL = "openai:bench-stream"
FIRST_WORDS = "Il fait"


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: bool = False) -> bytes:
    choices = [] if usage else [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    chunk: dict[str, Any] = {
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "bench-stream",
        "choices": choices,
    }
    if usage:
        chunk["usage"] = {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
    return f"data: {json.dumps(chunk)}\n\n".encode()


class _Provider:
    """The provider's side, one streamed answer at a time (the benchmark is sequential)."""

    def __init__(self) -> None:
        self.first_byte_at = 0.0
        self.resume = threading.Event()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            # Headers and the first delta are two writes: without this, Nagle's algorithm holds the
            # second until the platform's delayed ACK (~40 ms), which is this server's doing, not the platform's.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                provider.first_byte_at = time.perf_counter()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()  # HTTP/1.0 without Content-Length: the body ends when the connection closes
                self.wfile.write(_chunk({"role": "assistant", "content": ""}) + _chunk({"content": FIRST_WORDS}))
                self.wfile.flush()
                provider.resume.wait(30)
                self.wfile.write(
                    _chunk({"content": " beau."}) + _chunk(finish="stop") + _chunk(usage=True) + b"data: [DONE]\n\n"
                )

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@contextmanager
def _provider_environment(provider: _Provider) -> Iterator[None]:
    """The stack's functions read the endpoint and key from the environment they start with."""
    with mock.patch.dict(os.environ, {"OPENAI_BASE_URL": f"{provider.url}/v1", "OPENAI_API_KEY": "bench-key"}):
        yield


def _one_exchange(api: httpx.Client, provider: _Provider, headers: dict[str, str], token: str) -> float:
    """Milliseconds from the provider's first byte to the client's first `text` event."""
    provider.resume.clear()
    seen_at, event, text = None, None, []
    body = {"sessionToken": token, "message": "Quel temps ?", "stream": True}
    with api.stream("POST", "/chat", json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "text":
                if seen_at is None:
                    seen_at = time.perf_counter()
                    provider.resume.set()  # the rest of the answer may come now
                text.append(json.loads(line[5:])["text"])
            elif line.startswith("data:") and event == "error":
                raise AssertionError(line)
    assert seen_at is not None and text[0] == FIRST_WORDS, text
    return (seen_at - provider.first_byte_at) * 1000


def measure(runs: int = 30) -> dict[str, Any]:
    provider = _Provider()
    try:
        with _provider_environment(provider), bench_platform() as platform:
            with httpx.Client(base_url=platform.url, timeout=60) as api:
                user = platform.user(api, "bench-stream@example.com")
                headers = user["headers"]
                session = api.post("/sessions", json={"model": MODEL}, headers=headers).json()["sessionToken"]
                _one_exchange(api, provider, headers, session)  # warm: workers, pools, caches
                samples = [_one_exchange(api, provider, headers, session) for _ in range(runs)]
    finally:
        provider.resume.set()
        provider.server.shutdown()
        provider.server.server_close()
    ordered = sorted(samples)
    return {
        "runs": runs,
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(_percentile(samples, 0.95), 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
    }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
