"""The local API Gateway and Function URLs: HTTP in, Lambda proxy events out.

Routes, their functions and the gateway's own error responses all come from
template.yaml. Requests become API Gateway REST proxy events (payload 1.0) or
Function URL events (payload 2.0) with the TCP peer as `sourceIp`; results are
written back as the gateway would.

The same server answers Lambda's Invoke API (`POST /2015-03-31/functions/<name>/invocations`),
which the emulator forwards to: state machine tasks, asynchronous invokes and
EventBridge targets run in the functions' worker processes like API requests.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from conduit.http_events import function_url_event, rest_event
from shared.local.emulator import LAMBDA_INVOKE_PATH
from shared.local.template import LOCAL_ACCOUNT_ID, GatewayResponse, Route
from shared.local.workers import FunctionPool, InvocationError, InvocationTimeout

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's own request limit
STAGE = "local"


@dataclass(frozen=True)
class Match:
    pool: FunctionPool
    route: Route | None  # None for a Function URL
    path_parameters: dict[str, str]
    url_path: str = "/"  # the path a Function URL function sees


def _match_route(route: Route, segments: list[str]) -> tuple[tuple[int, ...], dict[str, str]] | None:
    """Match like API Gateway: literal beats {param} beats {proxy+}. Returns (rank, parameters)."""
    pattern = [part for part in route.path.split("/") if part]
    parameters: dict[str, str] = {}
    rank: list[int] = []
    for index, part in enumerate(pattern):
        if part.startswith("{") and part.endswith("+}"):
            if index >= len(segments):
                return None
            parameters[part[1:-2]] = "/".join(segments[index:])
            return (*rank, 2), parameters
        if index >= len(segments):
            return None
        if part.startswith("{") and part.endswith("}"):
            parameters[part[1:-1]] = unquote(segments[index])
            rank.append(1)
        elif part == segments[index]:
            rank.append(0)
        else:
            return None
    if len(pattern) != len(segments):
        return None
    return tuple(rank), parameters


class Router:
    def __init__(self, pools: list[FunctionPool]) -> None:
        self._by_name = {pool.spec.logical_id: pool for pool in pools}
        self._routes = [(route, pool) for pool in pools for route in pool.spec.routes]
        self._url_functions = sorted(
            ((pool.spec.url_prefix.rstrip("/"), pool) for pool in pools if pool.spec.url_prefix),
            key=lambda item: -len(item[0]),
        )
        self._url_paths = {path: pool for pool in pools for path in getattr(pool.spec, "url_paths", ())}

    def pool(self, function_name: str) -> FunctionPool | None:
        """A function by name, ARN or partial ARN (`…:function:<name>[:qualifier]`), as Invoke accepts."""
        if ":function:" in function_name:
            function_name = function_name.split(":function:", 1)[1]
        return self._by_name.get(function_name.split(":", 1)[0])

    def match(self, method: str, path: str) -> Match | None:
        if path in self._url_paths:
            return Match(pool=self._url_paths[path], route=None, path_parameters={}, url_path=path)
        for prefix, pool in self._url_functions:
            if path == prefix or path.startswith(prefix + "/"):
                return Match(pool=pool, route=None, path_parameters={}, url_path=path[len(prefix) :] or "/")
        segments = [part for part in path.split("/") if part]
        best: tuple[tuple[int, ...], Route, FunctionPool, dict[str, str]] | None = None
        for route, pool in self._routes:
            if route.method not in (method, "ANY"):
                continue
            matched = _match_route(route, segments)
            if matched and (best is None or matched[0] < best[0]):
                best = (matched[0], route, pool, matched[1])
        if best is None:
            return None
        return Match(pool=best[2], route=best[1], path_parameters=best[3])


class Gateway(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5. Under load (clients, Function URL webhooks, the
    # emulator's Lambda invokes and EventBridge events all come here, and the accept thread competes
    # for the GIL) the queue fills; Linux then drops the handshake and the client retries after 1,
    # 3, 7 s: the 7-9 s stalls that turned a 4 s chat deadline into CHAT_TIMEOUT. Same as werkzeug's.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], router: Router, gateway_responses: dict[str, GatewayResponse], quiet: bool
    ) -> None:
        super().__init__(address, _GatewayRequestHandler)
        self.router = router  # replaceable until serving starts: the stack binds first, then starts its functions
        self.gateway_responses = gateway_responses
        self.quiet = quiet

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (say, one that gave up while the stack was still starting) is not an error.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def gateway_response(self, kind: str) -> GatewayResponse:
        """API Gateway's own answer (no function ran), as template.yaml's GatewayResponses define it."""
        fallback = "DEFAULT_5XX" if kind in ("INTEGRATION_FAILURE", "INTEGRATION_TIMEOUT", "DEFAULT_5XX") else "DEFAULT_4XX"
        return self.gateway_responses.get(kind) or self.gateway_responses[fallback]


class _GatewayRequestHandler(BaseHTTPRequestHandler):
    server: Gateway
    protocol_version = "HTTP/1.1"
    server_version = "conduit-local"
    # A streamed answer is many small writes (headers, then each event): with Nagle's algorithm each
    # would wait for the client's delayed ACK of the one before (~40 ms on Linux).
    disable_nagle_algorithm = True

    def do_request(self) -> None:
        started = time.perf_counter()
        status = self._handle()
        if not self.server.quiet:
            elapsed = (time.perf_counter() - started) * 1000
            print(f"{self.command} {self.path} -> {status} ({elapsed:.0f} ms)", file=sys.stderr, flush=True)

    def __getattr__(self, name: str) -> Any:
        # Every method goes through routing, as at API Gateway: TRACE, CONNECT or an invented
        # method get the template's answer for an unknown route, not http.server's 501.
        if name.startswith("do_"):
            return self.do_request
        raise AttributeError(name)

    def _handle(self) -> int:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            self.close_connection = True
            return self._send_gateway_response("REQUEST_TOO_LARGE")
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        method = self.command.upper()
        invoke = LAMBDA_INVOKE_PATH.match(url.path)
        if invoke and method == "POST":
            return self._invoke(unquote(invoke.group(1)), raw)
        match = self.server.router.match(method, url.path)
        if match is None:
            # API Gateway answers an unknown resource or method itself.
            return self._send_gateway_response("MISSING_AUTHENTICATION_TOKEN")
        headers = list(self.headers.items())
        source_ip = self.client_address[0]
        request = {"query": url.query, "headers": headers, "raw": raw, "source_ip": source_ip}
        if match.route is None:
            event = function_url_event(method, match.url_path, **request)
        else:
            event = rest_event(
                match.route.path,
                method,
                url.path,
                path_parameters=match.path_parameters,
                account_id=LOCAL_ACCOUNT_ID,
                stage=STAGE,
                **request,
            )
        relay = _StreamRelay(self) if match.route is None and match.pool.spec.response_stream else None
        try:
            result = match.pool.invoke(event, on_stream=relay)
        except InvocationError as error:
            # One line either way, so a 500 in a log is never a mystery (a timeout too).
            print(f"{match.pool.spec.logical_id}: {error.payload}", file=sys.stderr, flush=True)
            if relay is not None and relay.started:
                return relay.cut()
            return self._send_gateway_response("INTEGRATION_TIMEOUT" if isinstance(error, InvocationTimeout) else "DEFAULT_5XX")
        if relay is not None and relay.started:
            return relay.finish()
        return self._send_result(result)  # a streaming function may still answer whole, as on AWS

    def _invoke(self, function_name: str, raw: bytes) -> int:
        """Lambda's Invoke API: RequestResponse answers the result (or the unhandled error,
        flagged by X-Amz-Function-Error); Event queues the invocation and answers 202."""
        pool = self.server.router.pool(function_name)
        if pool is None:
            body = {"Type": "User", "Message": f"Function not found: {function_name}"}
            headers = [("x-amzn-ErrorType", "ResourceNotFoundException")]
            return self._send(404, headers, json.dumps(body).encode())
        try:
            event = json.loads(raw or b"{}")
        except ValueError:
            headers = [("x-amzn-ErrorType", "InvalidRequestContentException")]
            return self._send(400, headers, json.dumps({"Type": "User", "Message": "Could not parse request body into json"}).encode())
        if self.headers.get("X-Amz-Invocation-Type") == "Event":
            threading.Thread(target=self._invoke_quietly, args=(pool, event), daemon=True).start()
            return self._send(202, [], b"")
        try:
            return self._send(200, [("X-Amz-Executed-Version", "$LATEST")], json.dumps(pool.invoke(event)).encode())
        except InvocationError as error:
            headers = [("X-Amz-Function-Error", "Unhandled"), ("X-Amz-Executed-Version", "$LATEST")]
            return self._send(200, headers, json.dumps(error.payload).encode())

    @staticmethod
    def _invoke_quietly(pool: FunctionPool, event: Any) -> None:
        try:
            pool.invoke(event)
        except InvocationError as error:  # Lambda would log it and retry twice; the worker printed the trace
            print(f"{pool.spec.logical_id} (async): {error.payload}", file=sys.stderr, flush=True)

    def _send_result(self, result: Any) -> int:
        if not isinstance(result, dict) or "statusCode" not in result:
            return self._send_gateway_response("DEFAULT_5XX")
        body = result.get("body") or ""
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
        headers: list[tuple[str, str]] = list((result.get("headers") or {}).items())
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((name, str(value)) for value in values)
        headers.extend(("Set-Cookie", cookie) for cookie in result.get("cookies") or [])
        return self._send(int(result["statusCode"]), headers, payload)

    def _send_gateway_response(self, kind: str) -> int:
        response = self.server.gateway_response(kind)
        return self._send(response.status, [("Content-Type", "application/json")], response.body.encode("utf-8"))

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> int:
        self.send_response(status)
        seen = set()
        for name, value in headers:
            if name.lower() in ("content-length", "connection", "transfer-encoding"):
                continue
            seen.add(name.lower())
            self.send_header(name, str(value))
        if "content-type" not in seen:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        return status

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # do_request prints one line per request instead


class _StreamRelay:
    """A streamed Function URL response (InvokeMode RESPONSE_STREAM), relayed to the client as the
    function produces it: chunked transfer, each chunk written to the socket at once. Each call answers
    the worker whether the client is still there, so a client that hung up stops the invocation at its
    next write (a socket write alone would only fail at the write after the peer's reset)."""

    def __init__(self, handler: _GatewayRequestHandler) -> None:
        self.handler = handler
        self.started = False
        self.status = 200
        self.gone = False

    def __call__(self, kind: str, payload: Any) -> bool:
        if kind == "stream_start":
            self.started, self.status = True, int(payload["statusCode"])
        if self.gone or not self._client_connected():
            self.gone = True
            return False
        try:
            if kind == "stream_start":
                self._start(payload.get("headers") or {})
            elif payload:  # an empty chunk would end the body
                self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        except OSError:
            self.gone = True
            return False
        return True

    def _start(self, headers: dict[str, str]) -> None:
        self.handler.send_response(self.status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.handler.send_header(name, str(value))
        self.handler.send_header("Transfer-Encoding", "chunked")
        self.handler.end_headers()

    def _client_connected(self) -> bool:
        try:  # a client that closed its end reads as EOF; one that sent more is still there
            return self.handler.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def finish(self) -> int:
        """The end of the body, or nothing more for a client that has gone."""
        if not self.gone:
            try:
                self.handler.wfile.write(b"0\r\n\r\n")
                return self.status
            except OSError:
                pass
        self.handler.close_connection = True
        return self.status

    def cut(self) -> int:
        """The function failed mid-stream: the connection closes without the body's end, so the
        client sees an incomplete response, as Lambda leaves it."""
        self.handler.close_connection = True
        return self.status
