"""`anthropic:<model>`: the Anthropic Messages API (API.md §7).

    POST {ANTHROPIC_BASE_URL}/v1/messages   x-api-key: {ANTHROPIC_API_KEY}

HTTP, retries, deadline and error handling are the OpenAI provider's
(`models/wire.py`); this module maps messages to and from content blocks. The
system prompt is the top-level `system`; with `on_text` the answer streams and
each `text_delta` is passed on as it arrives.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from conduit.models import (
    Message,
    ModelTurn,
    TextSink,
    ToolCall,
    ToolSpec,
    Usage,
    checked_tool_call,
    cut_off_tool_call,
    declared_tools,
    model_error,
    token_count,
)
from conduit.models.wire import (
    Endpoint,
    endpoint_from_environment,
    model_response,
    parse_json_object,
    post_json,
    sse_events,
    stream_error_detail,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
MAX_TOKENS = 4096  # required by the API; ample for a chat turn


@cache
def anthropic_settings() -> Endpoint:
    """Read once per cold start; tests clear the cache after changing the environment."""
    return endpoint_from_environment("ANTHROPIC", DEFAULT_BASE_URL)


# --- our messages -> Messages API ---------------------------------------------------------------


def to_anthropic_messages(messages: list[Message]) -> list[dict[str, Any]]:
    mapped: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            _append_tool_result(mapped, message)
        elif message.role == "assistant":
            blocks = _assistant_blocks(message)
            if blocks:  # an assistant turn with neither text nor calls has nothing to send
                mapped.append({"role": "assistant", "content": blocks})
        else:
            mapped.append({"role": "user", "content": message.content})
    return mapped


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    # Blank text blocks are rejected by the API, so text is only sent when there is some.
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content.strip() else []
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return blocks


def _append_tool_result(mapped: list[dict[str, Any]], message: Message) -> None:
    """Tool results travel in a user turn; the results of one assistant turn share ONE user message."""
    block = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
    previous = mapped[-1] if mapped else None
    if previous and previous["role"] == "user" and isinstance(previous["content"], list):
        previous["content"].append(block)
    else:
        mapped.append({"role": "user", "content": [block]})


def to_anthropic_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [{"name": tool.name, "description": tool.description, "input_schema": tool.input_schema} for tool in tools]


def request_body(
    model: str, messages: list[Message], tools: list[ToolSpec], system: str | None = None, *, stream: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": MAX_TOKENS, "messages": to_anthropic_messages(messages)}
    if system:
        body["system"] = system
    declared = declared_tools(messages, tools)
    if declared:  # declared whenever the history holds tool calls: the API refuses tool_use blocks otherwise
        body["tools"] = to_anthropic_tools(declared)
    if stream:
        body["stream"] = True
    return body


# --- Messages API -> our turn -------------------------------------------------------------------

# stop_reason -> ours (end_turn, tool_use, stop_sequence, pause_turn and anything new: a stop).
_FINISH = {"max_tokens": "length", "model_context_window_exceeded": "length", "refusal": "refusal"}


def from_anthropic_response(body: Any) -> ModelTurn:
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, list):
        raise model_error("anthropic", "the response has no content")
    return from_anthropic_content(content, body.get("stop_reason"), _usage(body.get("usage")))


def _usage(usage: Any, previous: Usage | None = None) -> Usage:
    """Input counts cache writes and reads too (they are input the model read); a stream's
    `message_delta` carries only the output so far, so missing fields keep `previous`."""
    if not isinstance(usage, dict):
        return previous or Usage()
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    has_input = any(usage.get(key) is not None for key in keys)  # null is "not reported here"
    input_tokens = sum(token_count(usage.get(key)) for key in keys)
    has_output = usage.get("output_tokens") is not None
    return Usage(
        input_tokens if has_input or previous is None else previous.input_tokens,
        token_count(usage.get("output_tokens")) if has_output or previous is None else previous.output_tokens,
    )


def from_anthropic_content(blocks: list[Any], stop_reason: Any = None, usage: Usage | None = None) -> ModelTurn:
    """Text blocks joined, `tool_use` blocks as calls; other blocks (thinking, ...) are not for the user."""
    text: list[str] = []
    calls: list[ToolCall] = []
    finish = _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif kind == "tool_use":
            if finish == "length":
                raise cut_off_tool_call("anthropic")  # max_tokens inside tool_use: its input is incomplete
            calls.append(_tool_call(block))
        elif kind is None:
            raise model_error("anthropic", "a content block is malformed")
    if finish == "refusal":  # no call made alongside a refusal is run
        calls = []
    return ModelTurn(text="".join(text), tool_calls=tuple(calls), usage=usage or Usage(), finish_reason=finish)


def _tool_call(block: dict[str, Any]) -> ToolCall:
    return checked_tool_call("anthropic", "tool_use", block.get("id"), block.get("name"), block.get("input"))


# --- the provider -------------------------------------------------------------------------------


class AnthropicModel:
    def complete(
        self,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        deadline: float,
        system: str | None = None,
        on_text: TextSink | None = None,
    ) -> ModelTurn:
        settings = anthropic_settings()
        api_key = settings.api_key
        if api_key is None:
            raise model_error("anthropic", "ANTHROPIC_API_KEY is not set")
        url = f"{settings.base_url}/v1/messages"
        headers = {"x-api-key": api_key, "anthropic-version": API_VERSION}
        body = request_body(model, messages, tools, system, stream=on_text is not None)
        if on_text is None:
            answer = post_json("anthropic", url, {**headers, "Accept": "application/json"}, body, deadline=deadline)
            return from_anthropic_response(answer)
        headers["Accept"] = "text/event-stream"
        with model_response("anthropic", url, headers, body, deadline=deadline) as response:
            return parse_anthropic_stream(response.iter_lines(), on_text)


def provider() -> AnthropicModel:
    return AnthropicModel()


# --- streamed responses (`"stream": true`), read as they arrive -----------------------------------


def parse_anthropic_stream(lines: Iterable[str], on_text: TextSink | None = None) -> ModelTurn:
    """Rebuild the content blocks from stream events (text deltas passed on as they arrive), then
    read them as a whole response would be."""
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, list[str]] = {}
    stop_reason: Any = None
    usage = Usage()
    for data in sse_events(lines):
        event = parse_json_object("anthropic", data, "a stream event")
        kind, index = event.get("type"), event.get("index", 0)
        if kind == "error":
            raise model_error("anthropic", stream_error_detail(event.get("error")))
        if kind == "message_start":
            usage = _usage((event.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            stop_reason = (event.get("delta") or {}).get("stop_reason") or stop_reason
            usage = _usage(event.get("usage"), usage)
        elif kind == "content_block_start":
            blocks[index] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta":
            piece = _apply_delta(blocks.get(index), partial_json.setdefault(index, []), event.get("delta") or {})
            if piece and on_text is not None:
                on_text(piece)
        elif kind == "message_stop":
            if _FINISH.get(stop_reason) == "length" and any(b.get("type") == "tool_use" for b in blocks.values()):
                raise cut_off_tool_call("anthropic")  # its input JSON stops mid-way: never parsed, never run
            for at, pieces in partial_json.items():
                # tool_use input arrives as JSON text in pieces, valid only once complete; none keeps the start's {}.
                if "".join(pieces) and at in blocks:
                    blocks[at]["input"] = parse_json_object("anthropic", "".join(pieces), "tool call arguments")
            return from_anthropic_content([blocks[at] for at in sorted(blocks)], stop_reason, usage)
    raise model_error("anthropic", "the stream ended early")


def _apply_delta(block: dict[str, Any] | None, partial_json: list[str], delta: dict[str, Any]) -> str:
    """Apply one delta to its block; the text it adds (for the client), if any."""
    if block is None:
        raise model_error("anthropic", "a stream delta names no open content block")
    if delta.get("type") == "text_delta":
        piece = delta.get("text") or ""
        block["text"] = block.get("text", "") + piece
        return piece
    if delta.get("type") == "input_json_delta":
        partial_json.append(delta.get("partial_json") or "")
    return ""
