"""A streamed Function URL response (InvokeMode RESPONSE_STREAM), relayed to the client as the
function produces it.

The worker running the function sends ("stream_start", {statusCode, headers}) and then each
("stream_chunk", bytes) as the handler writes them (shared/local/workers.py); the relay writes each
to the client's socket at once, in chunked transfer, with the writer the stream server uses behind
the Lambda Web Adapter on AWS (conduit/http/stream_server.py), and answers the worker whether the client
is still there.
"""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler
from typing import Any

from conduit.http.stream_server import SocketResponseStream


class StreamRelay:
    """The gateway's `on_stream` for one request. Each call answers the worker whether the client is
    still there, so a client that hung up stops the invocation at its next write (a socket write
    alone would only fail at the write after the peer's reset)."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self.handler = handler
        self.stream = SocketResponseStream(handler)
        self.started = False
        self.status = 200
        self.gone = False

    def __call__(self, kind: str, payload: Any) -> bool:
        if kind == "stream_start":
            self.started, self.status = True, int(payload["statusCode"])
        if self.gone or not self._client_connected():
            self.gone = True
            return False
        if kind == "stream_start":
            delivered = self.stream.start(self.status, payload.get("headers") or {})
        else:
            delivered = self.stream.write(payload)
        self.gone = not delivered
        return delivered

    def _client_connected(self) -> bool:
        try:  # a client that closed its end reads as EOF; one that sent more is still there
            return self.handler.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def finish(self) -> int:
        """The end of the body, or nothing more for a client that has gone."""
        if self.gone:
            self.handler.close_connection = True
        else:
            self.stream.end()  # which closes the connection if the client has gone since
        return self.status

    def cut(self) -> int:
        """The function failed mid-stream: the connection closes without the body's end, so the
        client sees an incomplete response, as Lambda leaves it."""
        self.handler.close_connection = True
        return self.status
