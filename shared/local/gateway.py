"""The local API Gateway and Function URLs: HTTP in, Lambda proxy events out.

Routes, their functions and the gateway's own error responses all come from
template.yaml. A request goes to its function (routing.py) as an API Gateway REST
proxy event (payload 1.0) or a Function URL event (payload 2.0), with the TCP
peer as `sourceIp` (conduit/http/events.py, the layer's builders); the result is
written back as the gateway would, or relayed as it comes for a streaming
Function URL (stream_relay.py).

The same server answers Lambda's Invoke API (invoke_api.py), which the emulator
forwards to: state machine tasks, asynchronous invokes and EventBridge targets
run in the functions' worker processes like API requests.
"""

from __future__ import annotations

import base64
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from conduit.http.events import function_url_event, rest_event
from shared.local import invoke_api
from shared.local.routing import Router
from shared.local.stream_relay import StreamRelay
from shared.local.template import LOCAL_ACCOUNT_ID, GatewayResponse
from shared.local.workers import InvocationError, InvocationTimeout

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's own request limit
STAGE = "local"


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
        invoke = invoke_api.LAMBDA_INVOKE_PATH.match(url.path)
        if invoke and method == "POST":
            function_name = unquote(invoke.group(1))
            pool = self.server.router.pool(function_name)
            invocation_type = self.headers.get("X-Amz-Invocation-Type")
            return self._send(*invoke_api.invoke(pool, function_name, raw, invocation_type))
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
        relay = StreamRelay(self) if match.route is None and match.pool.spec.response_stream else None
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
