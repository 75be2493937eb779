"""A model provider's HTTP API on loopback: records each request and answers what a test queued.

Answers are JSON bodies (any status, any headers) or server-sent event streams written piece by
piece; a threading.Event in a stream makes the server stop writing until the client sets it, so a
test can show the client saw the first words while the model was still writing (ordering, not
timing). Answers queued for a model id (`for_model`) go to requests naming that model, so one
server can serve the local stack's chat functions for many tests at once.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # bytes are sent as they are, anything else as JSON
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    # A streamed answer (server-sent events): each bytes item is written and flushed at once; at a
    # threading.Event the server stops writing until the client sets it (see `Paused`).
    stream: list[Any] | None = None


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ModelServer:
    url: str
    replies: list[Reply] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    waits: list[float] = field(default_factory=list)  # what the provider slept before each retry
    log: list[str] = field(default_factory=list)  # the server's side of a streamed answer, in order

    by_model: dict[str, list[Reply]] = field(default_factory=dict)
    _httpd: Any = None
    _thread: Any = None

    def reply(
        self, body: Any = None, status: int = 200, delay: float = 0.0, headers: dict[str, str] | None = None
    ) -> None:
        self.replies.append(Reply(status, body, delay, headers or {}))

    def stream(self, *items: Any, status: int = 200) -> None:
        self.replies.append(Reply(status, stream=list(items)))

    def for_model(self, model: str, *replies: Reply) -> None:
        """Queue answers for requests whose body names `model`."""
        self.by_model.setdefault(model, []).extend(replies)

    def next_reply(self, body: Any) -> Reply:
        queue = self.by_model.get(body.get("model")) if isinstance(body, dict) else None
        if queue is None:
            queue = self.replies
        return queue.pop(0) if queue else Reply(404, {"error": {"type": "not_found"}})

    @classmethod
    def start(cls) -> ModelServer:
        server = cls(url="")
        server._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
        server._httpd.daemon_threads = True
        server.url = f"http://127.0.0.1:{server._httpd.server_address[1]}"
        server._thread = threading.Thread(target=server._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        server._thread.start()
        return server

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            body = json.loads(raw)
            server.received.append(Received(self.path, headers, body))
            reply = server.next_reply(body)
            if reply.delay:
                server.release.wait(reply.delay)  # set at teardown, so no test waits the whole delay
            if reply.stream is not None:
                self._stream(reply)
                return
            body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (the timeout test)

        def _stream(self, reply: Reply) -> None:
            # No Content-Length: the body ends when the connection closes (HTTP/1.0), as a cut-off stream does.
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for item in reply.stream or []:
                    if isinstance(item, threading.Event):
                        server.log.append("server waits")
                        # The client sets it once it has seen what came before; teardown sets `release`.
                        resumed = item.wait(10) and not server.release.is_set()
                        server.log.append("server resumes" if resumed else "server gave up waiting")
                    else:
                        self.wfile.write(item if isinstance(item, bytes) else item.encode())
                        self.wfile.flush()
            except OSError:
                pass  # the client went away

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


