"""What the HTTP model providers (OpenAI-compatible, Anthropic) share: one JSON POST through the
guarded client with the exchange's deadline and provider-safe error messages, SSE line parsing,
and strict parsing of tool arguments."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from conduit import safe_json
from conduit.errors import ConduitError
from conduit.models import model_error
from conduit.outbound import GuardedClient, OutboundError, OutboundResponse

# Long answers with many tool calls stay well under this; anything larger is not a chat turn.
MAX_RESPONSE_BYTES = 8 * 1_048_576
_SAFE_ERROR_TYPE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    base_url: str
    api_key: str | None


def endpoint_from_environment(prefix: str, default_base_url: str) -> Endpoint:
    """`<PREFIX>_BASE_URL` (default `default_base_url`) and `<PREFIX>_API_KEY`; empty means unset."""
    base_url = os.environ.get(f"{prefix}_BASE_URL") or default_base_url
    return Endpoint(base_url=base_url.rstrip("/"), api_key=os.environ.get(f"{prefix}_API_KEY") or None)


def post_json(provider: str, url: str, headers: dict[str, str], body: dict[str, Any], *, deadline: float) -> Any:
    """POST `body` and return the decoded 2xx JSON answer; MODEL_ERROR or CHAT_TIMEOUT otherwise."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ConduitError("CHAT_TIMEOUT")
    # No redirects: an API endpoint that redirects is misconfigured, and the key must not follow it.
    client = GuardedClient(timeout=remaining, max_bytes=MAX_RESPONSE_BYTES, max_redirects=0)
    try:
        response = client.request("POST", url, headers=headers, json=body)
    except OutboundError as exc:
        # A timeout that is the chat's own deadline is CHAT_TIMEOUT; anything else is the provider failing.
        if time.monotonic() >= deadline:
            raise ConduitError("CHAT_TIMEOUT") from exc
        raise model_error(provider, str(exc)) from exc
    if not 200 <= response.status < 300:
        raise model_error(provider, _status_detail(response))
    try:
        return response.json()
    except ValueError:
        raise model_error(provider, "the response is not JSON") from None


def _status_detail(response: OutboundResponse) -> str:
    """`HTTP 429 (rate_limit_exceeded)`: the status and the error type, never the error text.

    Error texts may quote the request (prompt, tool results), so only a short
    identifier-like type or code is kept.
    """
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    kind = (error.get("type") or error.get("code")) if isinstance(error, dict) else None
    if isinstance(kind, str) and _SAFE_ERROR_TYPE.match(kind):
        return f"HTTP {response.status} ({kind})"
    return f"HTTP {response.status}"


def sse_events(lines: Iterable[str]) -> Iterator[str]:
    """The `data` payload of each Server-Sent Event; `event:`, `id:` and comment lines are not needed."""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:  # a stream that does not end with a blank line
        yield "\n".join(data)


def parse_json_object(provider: str, text: str, what: str) -> dict[str, Any]:
    try:
        value = safe_json.loads(text)
    except ValueError:
        raise model_error(provider, f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise model_error(provider, f"{what} is not a JSON object")
    return value


# --- our messages -> Chat Completions -----------------------------------------------------------
