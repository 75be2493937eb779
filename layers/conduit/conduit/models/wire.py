"""What the HTTP model providers (OpenAI-compatible, Anthropic) share: one POST through the
guarded client (operator policy) with the exchange's deadline, retries of 429/5xx/overload and
provider-safe error messages, the answer whole (`post_json`) or as it arrives (`model_response`),
SSE line parsing, and strict parsing of tool arguments."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from conduit.platform import safe_json
from conduit.platform.errors import ConduitError
from conduit.models import model_error
from conduit.net.outbound import GuardedClient, OutboundError, OutboundStream
from conduit.platform.settings import get_settings

# Long answers with many tool calls stay well under this; anything larger is not a chat turn.
MAX_RESPONSE_BYTES = 8 * 1_048_576
_SAFE_ERROR_TYPE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    base_url: str
    local_key: str | None  # `<PREFIX>_API_KEY`: local runs and tests
    key_secret_id: str  # `<PREFIX>_API_KEY_ID`: the Secrets Manager secret holding the key in AWS

    @property
    def api_key(self) -> str | None:
        """The provider key: the environment's when set, else (outside local mode) the secret's.
        Powertools caches the secret for 5 minutes, so a rotated key is picked up without a cold start."""
        if self.local_key is not None:
            return self.local_key
        if not self.key_secret_id or get_settings().local_mode:
            return None
        # Imported here: functions that never call a model (and the providers' import) do not load it.
        from aws_lambda_powertools.utilities import parameters

        try:
            return parameters.get_secret(self.key_secret_id, max_age=300) or None
        except parameters.exceptions.GetParameterError as exc:  # missing, or the role may not read it
            raise ConduitError("MODEL_ERROR", "The model provider's key could not be read") from exc


def endpoint_from_environment(prefix: str, default_base_url: str) -> Endpoint:
    """`<PREFIX>_BASE_URL` (default `default_base_url`), `<PREFIX>_API_KEY` and `<PREFIX>_API_KEY_ID`;
    empty means unset, as the template passes "" for what it does not set."""
    base_url = os.environ.get(f"{prefix}_BASE_URL") or default_base_url
    return Endpoint(
        base_url=base_url.rstrip("/"),
        local_key=os.environ.get(f"{prefix}_API_KEY") or None,
        key_secret_id=os.environ.get(f"{prefix}_API_KEY_ID") or "",
    )


MAX_RETRIES = 2  # API.md §14: a 429, 5xx or overload answer is retried at most twice
RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))  # 529: Anthropic's "overloaded"
BASE_BACKOFF_SECONDS = 0.5
_sleep = time.sleep  # patched by tests: the waits are asserted, not waited


def post_json(provider: str, url: str, headers: dict[str, str], body: dict[str, Any], *, deadline: float) -> Any:
    """POST `body` and return the decoded 2xx JSON answer; MODEL_ERROR or CHAT_TIMEOUT otherwise."""
    with model_response(provider, url, headers, body, deadline=deadline) as response:
        content = response.read()
    try:
        return safe_json.loads(content)
    except ValueError:
        raise model_error(provider, "the response is not JSON") from None


@contextmanager
def model_response(
    provider: str, url: str, headers: dict[str, str], body: dict[str, Any], *, deadline: float
) -> Iterator[OutboundStream]:
    """POST `body` and hand back the 2xx answer with its body unread (a stream is read as it arrives).

    429, 5xx and overload answers are retried (at most MAX_RETRIES times) after the wait their
    `Retry-After` asks for, or a short backoff, unless that wait would outlive `deadline`; the last
    failure is MODEL_ERROR with the provider's status and error code. Outbound failures while the
    body is read are MODEL_ERROR too, or CHAT_TIMEOUT once the deadline has passed.
    """
    with ExitStack() as stack:
        response = _open_with_retries(provider, url, headers, body, deadline, stack)
        try:
            yield response
        except OutboundError as exc:
            raise _outbound_failure(provider, exc, deadline) from exc


def _open_with_retries(
    provider: str, url: str, headers: dict[str, str], body: dict[str, Any], deadline: float, stack: ExitStack
) -> OutboundStream:
    for attempt in range(MAX_RETRIES + 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConduitError("CHAT_TIMEOUT")
        # The operator's endpoint, not a user's URL: it may live in the VPC (outbound's operator policy).
        # No redirects: an API endpoint that redirects is misconfigured, and the key must not follow it.
        client = GuardedClient(timeout=remaining, max_bytes=MAX_RESPONSE_BYTES, max_redirects=0, policy="operator")
        with ExitStack() as this_attempt:
            try:
                response = this_attempt.enter_context(client.stream("POST", url, headers=headers, json=body))
                if 200 <= response.status < 300:
                    stack.enter_context(this_attempt.pop_all())
                    return response
                content = response.read()
            except OutboundError as exc:
                raise _outbound_failure(provider, exc, deadline) from exc
        detail = _status_detail(response.status, content)
        wait = retry_wait(response.status, response.headers, attempt)
        if wait is None or attempt == MAX_RETRIES or time.monotonic() + wait >= deadline:
            raise model_error(provider, detail)
        _sleep(wait)
    raise AssertionError("unreachable")  # the last attempt returns or raises


def retry_wait(status: int, headers: Any, attempt: int) -> float | None:
    """Seconds to wait before retrying an answer with `status`, or None when it is not retried.
    `retry-after-ms` (OpenAI) or `Retry-After` (seconds or an HTTP date) when sent, else backoff."""
    if status not in RETRY_STATUSES:
        return None
    millis = headers.get("retry-after-ms", "")
    try:
        if millis:
            return max(0.0, float(millis) / 1000)
    except ValueError:
        pass
    after = (headers.get("retry-after") or "").strip()
    if after:
        try:
            return max(0.0, float(after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(after).timestamp() - time.time())
            except (TypeError, ValueError, IndexError, OverflowError):
                pass
    return BASE_BACKOFF_SECONDS * 2**attempt


def _outbound_failure(provider: str, exc: OutboundError, deadline: float) -> ConduitError:
    # A timeout that is the chat's own deadline is CHAT_TIMEOUT; anything else is the provider failing.
    if time.monotonic() >= deadline:
        return ConduitError("CHAT_TIMEOUT")
    return model_error(provider, str(exc))


def _status_detail(status: int, content: bytes) -> str:
    """`HTTP 400 (context_length_exceeded)`: the status and the error code, never the error text.

    Error texts may quote the request (prompt, tool results), so only a short identifier-like
    code (OpenAI's `code`, else the `type`: Anthropic's `overloaded_error`) is kept.
    """
    try:
        error = safe_json.loads(content).get("error")
    except (ValueError, AttributeError):
        error = None
    kind = error_code(error)
    return f"HTTP {status} ({kind})" if kind else f"HTTP {status}"


def stream_error_detail(error: Any) -> str:
    """An error a provider reported inside a stream, with its code when it has a safe one."""
    code = error_code(error)
    return f"the stream reported an error ({code})" if code else "the stream reported an error"


def error_code(error: Any) -> str | None:
    """The identifier-like code of a provider's `error` object, or None."""
    if not isinstance(error, dict):
        return None
    for key in ("code", "type"):
        kind = error.get(key)
        if isinstance(kind, str) and _SAFE_ERROR_TYPE.match(kind):
            return kind
    return None


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
