"""`anthropic:<model>`: the Anthropic Messages API (API.md §7).

    POST {ANTHROPIC_BASE_URL}/v1/messages   x-api-key: {ANTHROPIC_API_KEY}

HTTP, deadline and error handling are the OpenAI provider's (`post_json`);
this module only maps messages to and from content blocks.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from conduit.models import Message, ModelTurn, ToolCall, ToolSpec, checked_tool_call, model_error
from conduit.models.wire import Endpoint, endpoint_from_environment, parse_json_object, post_json, sse_events

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


def request_body(model: str, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": MAX_TOKENS, "messages": to_anthropic_messages(messages)}
    if tools:
        body["tools"] = to_anthropic_tools(tools)
    return body


# --- Messages API -> our turn -------------------------------------------------------------------


def from_anthropic_response(body: Any) -> ModelTurn:
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, list):
        raise model_error("anthropic", "the response has no content")
    return from_anthropic_content(content)


def from_anthropic_content(blocks: list[Any]) -> ModelTurn:
    """Text blocks joined, `tool_use` blocks as calls; other blocks (thinking, ...) are not for the user."""
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif kind == "tool_use":
            calls.append(_tool_call(block))
        elif kind is None:
            raise model_error("anthropic", "a content block is malformed")
    return ModelTurn(text="".join(text), tool_calls=tuple(calls))


def _tool_call(block: dict[str, Any]) -> ToolCall:
    return checked_tool_call("anthropic", "tool_use", block.get("id"), block.get("name"), block.get("input"))


# --- the provider -------------------------------------------------------------------------------


class AnthropicModel:
    def complete(self, model: str, messages: list[Message], tools: list[ToolSpec], *, deadline: float) -> ModelTurn:
        settings = anthropic_settings()
        if settings.api_key is None:
            raise model_error("anthropic", "ANTHROPIC_API_KEY is not set")
        headers = {"x-api-key": settings.api_key, "anthropic-version": API_VERSION, "Accept": "application/json"}
        body = post_json(
            "anthropic", f"{settings.base_url}/v1/messages", headers, request_body(model, messages, tools),
            deadline=deadline,
        )
        return from_anthropic_response(body)


def provider() -> AnthropicModel:
    return AnthropicModel()


# --- streamed responses (`"stream": true`), parsed from recorded or live SSE lines ------------


def parse_anthropic_stream(lines: Iterable[str]) -> ModelTurn:
    """Rebuild the content blocks from stream events, then read them as a whole response would be."""
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, list[str]] = {}
    for data in sse_events(lines):
        event = parse_json_object("anthropic", data, "a stream event")
        kind, index = event.get("type"), event.get("index", 0)
        if kind == "error":
            raise model_error("anthropic", "the stream reported an error")
        if kind == "content_block_start":
            blocks[index] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta":
            _apply_delta(blocks.get(index), partial_json.setdefault(index, []), event.get("delta") or {})
        elif kind == "content_block_stop" and "".join(partial_json.get(index, ())):
            # tool_use input arrives as JSON text in pieces, valid only once complete; none keeps the start's {}.
            blocks[index]["input"] = parse_json_object("anthropic", "".join(partial_json[index]), "tool call arguments")
        elif kind == "message_stop":
            return from_anthropic_content([blocks[index] for index in sorted(blocks)])
    raise model_error("anthropic", "the stream ended early")


def _apply_delta(block: dict[str, Any] | None, partial_json: list[str], delta: dict[str, Any]) -> None:
    if block is None:
        raise model_error("anthropic", "a stream delta names no open content block")
    if delta.get("type") == "text_delta":
        block["text"] = block.get("text", "") + (delta.get("text") or "")
    elif delta.get("type") == "input_json_delta":
        partial_json.append(delta.get("partial_json") or "")
