"""A streaming Function URL on AWS: the HTTP server the Lambda Web Adapter talks to.

Python managed runtimes cannot stream a response: AWS supports it natively on
Node.js only, and for other languages points to a custom runtime or the Lambda
Web Adapter (https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html).
The adapter is an extension (a layer): it turns each Function URL invocation
into an HTTP request to this server and, with AWS_LWA_INVOKE_MODE=response_stream,
streams our chunked answer back through the URL as it arrives.

This server turns that request back into the Function URL event (the adapter
forwards the original requestContext in `x-amzn-request-context`), with the
builder the local gateway uses (conduit/http/events.py), and calls the
function's ordinary `lambda_handler` with `context.response_stream`, which writes
each chunk to the socket at once: what the local stack's workers do, so the same
handler streams in both places (conduit/chat/streaming.py).

    python3 -m conduit.http.stream_server app.lambda_handler    # run.sh; listens on 127.0.0.1:$AWS_LWA_PORT
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from conduit.http.events import function_url_event

Handler = Callable[[dict[str, Any], Any], Any]
_ADAPTER_HEADERS = ("x-amzn-request-context", "x-amzn-lambda-context")


class InvocationContext:
    """Lambda's context object, from the invocation context the adapter forwards (`x-amzn-lambda-context`)."""

    def __init__(self, forwarded: dict[str, Any], response_stream: Any) -> None:
        config = forwarded.get("env_config") or {}
        self.function_name = config.get("function_name") or os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = config.get("version") or os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(config.get("memory") or os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 0)
        self.log_group_name = config.get("log_group") or os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = config.get("log_stream") or os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.aws_request_id = forwarded.get("request_id", "")
        self.invoked_function_arn = forwarded.get("invoked_function_arn", "")
        self._deadline_ms = int(forwarded.get("deadline") or 0)
        self.response_stream = response_stream

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


class SocketResponseStream:
    """`context.response_stream`: chunked transfer, each chunk written to the socket as it comes."""

    def __init__(self, request: BaseHTTPRequestHandler) -> None:
        self._request = request
        self.started = False

    def start(self, status: int, headers: dict[str, str]) -> bool:
        self.started = True
        try:
            self._request.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self._request.send_header(name, str(value))
            self._request.send_header("Transfer-Encoding", "chunked")
            self._request.end_headers()
        except OSError:
            return False
        return True

    def write(self, data: bytes) -> bool:
        if not data:  # an empty chunk would end the body
            return True
        try:
            self._request.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError:
            return False
        return True

    def end(self) -> None:
        try:
            self._request.wfile.write(b"0\r\n\r\n")
        except OSError:
            self._request.close_connection = True


def make_server(handler: Handler, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    invocation = threading.Lock()  # one invocation at a time, as in any Lambda execution environment

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Each text delta is a small write: with Nagle's algorithm it would wait for the adapter's
        # delayed ACK of the write before (~40 ms on Linux), per delta (bench/first_text.py).
        disable_nagle_algorithm = True

        def __getattr__(self, name: str) -> Any:
            if name.startswith("do_"):  # every method reaches the function, which routes it
                return self._invoke
            raise AttributeError(name)

        def _invoke(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if "x-amzn-request-context" not in self.headers:
                # Not an invocation: the adapter's readiness check (every invocation carries the header).
                return self._send({"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "ready"})
            forwarded = json.loads(self.headers.get("x-amzn-lambda-context") or "{}")
            trace = self.headers.get("x-amzn-trace-id")
            stream = SocketResponseStream(self)
            event = self._event(body)
            with invocation:
                if trace:  # what the managed runtime sets for X-Ray on each invocation
                    os.environ["_X_AMZN_TRACE_ID"] = trace
                result = handler(event, InvocationContext(forwarded, stream))
            if stream.started:
                stream.end()
            else:
                self._send(result)

        def _event(self, body: bytes) -> dict[str, Any]:
            """The payload-2.0 event Lambda built before the adapter made it a request."""
            url = urlsplit(self.path)
            headers = [(name, value) for name, value in self.headers.items() if name.lower() not in _ADAPTER_HEADERS]
            context = json.loads(self.headers.get("x-amzn-request-context") or "{}")
            return function_url_event(
                self.command, url.path or "/", query=url.query, headers=headers, raw=body, request_context=context
            )

        def _send(self, result: dict[str, Any]) -> None:
            """A response the function returned whole (not streamed)."""
            body = result.get("body") or ""
            payload = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
            self.send_response(int(result.get("statusCode", 200)))
            for name, value in (result.get("headers") or {}).items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, str(value))
            for cookie in result.get("cookies") or []:
                self.send_header("Set-Cookie", cookie)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # the function logs each invocation itself

    return _Server((host, port), RequestHandler)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: a burst beyond it has its SYNs dropped and retried
    # by the kernel after 1, 3, 7 s, the stalls seen under load.
    request_queue_size = 128


def load_handler(name: str) -> Handler:
    module, function = name.rsplit(".", 1)
    return getattr(importlib.import_module(module), function)


def main(argv: list[str]) -> None:
    # Importing the handler is the cold start: an error here fails the adapter's readiness, as an init error.
    handler = load_handler(argv[1])
    make_server(handler, int(os.environ.get("AWS_LWA_PORT") or os.environ.get("PORT") or 8080)).serve_forever()


if __name__ == "__main__":
    main(sys.argv)
