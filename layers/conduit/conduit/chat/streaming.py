"""Server-sent events written as they happen, when the platform can stream the response.

Whatever runs the handler may put a response stream on the Lambda context
(`context.response_stream`): the Lambda Web Adapter server on AWS
(`conduit/http/stream_server.py`) and the local stack's workers do. It has two methods:

    start(status, headers) -> bool   # the status line and headers, once, before any chunk
    write(data) -> bool              # one chunk, delivered at once

Both answer False once the client has gone. Without a stream (a buffered
invocation) the events are collected and returned as one body at the end, in
the order they happened: the same route serves both.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from conduit.platform.errors import ConduitError
from conduit.models import compact

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class EventStream:
    def __init__(self, context: Any, headers: dict[str, str] | None = None) -> None:
        self._stream = getattr(context, "response_stream", None)
        self._headers = {**SSE_HEADERS, **(headers or {})}
        self._buffer: list[str] = []
        self.status: int | None = None  # fixed by the first event once streamed: the status line has left

    @property
    def streamed(self) -> bool:
        return self._stream is not None

    def send(self, name: str, data: Any, status: int = 200) -> None:
        """Deliver one event; ConduitError("STREAM_ABORTED") when the client has gone."""
        chunk = f"event: {name}\ndata: {compact(data)}\n\n"
        if self._stream is None:
            # Nothing has left yet, so an error's status still becomes the response's.
            if self.status is None or status != 200:
                self.status = status
            self._buffer.append(chunk)
            return
        if self.status is None:
            self.status = status
            if not self._stream.start(status, self._headers):
                raise ConduitError("STREAM_ABORTED")
        if not self._stream.write(chunk.encode("utf-8")):
            raise ConduitError("STREAM_ABORTED")

    def fail(self, error: ConduitError) -> None:
        """End with an `error` event: its status is the response's if nothing was streamed before it."""
        try:
            self.send("error", error.body(), status=error.status)
        except ConduitError:
            pass  # the client left as the exchange failed: there is nobody to tell

    def response(self) -> Response:
        """The buffered body; once streamed, what the platform already sent (it ignores this)."""
        return Response(
            status_code=self.status or 200,
            content_type=SSE_HEADERS["Content-Type"],
            body="".join(self._buffer),
            headers={"Cache-Control": SSE_HEADERS["Cache-Control"]},
        )
