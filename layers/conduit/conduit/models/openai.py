"""`openai:<model>`: any OpenAI-compatible Chat Completions endpoint (API.md §7).

    POST {OPENAI_BASE_URL}/chat/completions   Authorization: Bearer {OPENAI_API_KEY}

Requests go through the guarded outbound client like every other outgoing
call, so the base URL must be public https (or loopback http in local mode).
`post_json` and `sse_events` are shared with the Anthropic provider: the
HTTP, deadline and error rules are the same for every HTTP model API.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from conduit.models import Message, ModelTurn, ToolCall, ToolSpec, compact, model_error
from conduit.models.wire import Endpoint, endpoint_from_environment, parse_json_object, post_json, sse_events

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_TOKENS = 4096  # the most a turn is held for (credits.py)


@cache
def openai_settings() -> Endpoint:
    """Read once per cold start; tests clear the cache after changing the environment."""
    return endpoint_from_environment("OPENAI", DEFAULT_BASE_URL)


# --- HTTP plumbing shared by the HTTP providers -------------------------------------------------


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    return [_to_openai_message(message) for message in messages]


def _to_openai_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,  # the API wants null, not "", beside tool calls
            "tool_calls": [_to_openai_tool_call(call) for call in message.tool_calls],
        }
    return {"role": message.role, "content": message.content}


def _to_openai_tool_call(call: ToolCall) -> dict[str, Any]:
    # Arguments travel as a JSON string, not an object.
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": compact(call.arguments)}}


def to_openai_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": tool.name, "description": tool.description, "parameters": tool.input_schema},
        }
        for tool in tools
    ]


def request_body(model: str, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": to_openai_messages(messages)}
    if tools:  # an empty tools array is rejected by the API
        body["tools"] = to_openai_tools(tools)
    return body


# --- Chat Completions -> our turn ---------------------------------------------------------------


def from_openai_response(body: Any) -> ModelTurn:
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise model_error("openai", "the response has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise model_error("openai", "the response has no message")
    return _turn_from_message(message)


def _turn_from_message(message: dict[str, Any]) -> ModelTurn:
    """A `message` (or a stream assembled into one): content plus tool calls with JSON-string arguments."""
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise model_error("openai", "the message content is not text")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise model_error("openai", "tool_calls is not a list")
    return ModelTurn(text=content or "", tool_calls=tuple(_tool_call(call) for call in calls))


def _tool_call(call: Any) -> ToolCall:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        raise model_error("openai", "a tool call has no function")
    call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments")
    if not (isinstance(call_id, str) and call_id and isinstance(name, str) and name and isinstance(arguments, str)):
        raise model_error("openai", "a tool call lacks its id, name or arguments")
    return ToolCall(id=call_id, name=name, arguments=parse_json_object("openai", arguments, "tool call arguments"))


# --- the provider -------------------------------------------------------------------------------


class OpenAIModel:
    def complete(self, model: str, messages: list[Message], tools: list[ToolSpec], *, deadline: float) -> ModelTurn:
        settings = openai_settings()
        if settings.api_key is None:
            raise model_error("openai", "OPENAI_API_KEY is not set")
        headers = {"Authorization": f"Bearer {settings.api_key}", "Accept": "application/json"}
        body = post_json(
            "openai", f"{settings.base_url}/chat/completions", headers, request_body(model, messages, tools),
            deadline=deadline,
        )
        return from_openai_response(body)


def provider() -> OpenAIModel:
    return OpenAIModel()


# --- streamed responses (`"stream": true`), parsed from recorded or live SSE lines ------------


def parse_openai_stream(lines: Iterable[str]) -> ModelTurn:
    """Assemble a streamed Chat Completion: text deltas appended, tool-call fragments joined by `index`."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finished = False
    for data in sse_events(lines):
        if data.strip() == "[DONE]":
            finished = True
            break
        chunk = parse_json_object("openai", data, "a stream chunk")
        if "error" in chunk:
            raise model_error("openai", "the stream reported an error")
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                raise model_error("openai", "a stream chunk is malformed")
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            for fragment in delta.get("tool_calls") or []:
                _merge_tool_fragment(calls, fragment)
            finished = finished or bool(choice.get("finish_reason"))
    if not finished:
        raise model_error("openai", "the stream ended early")
    message = {"content": "".join(text), "tool_calls": [calls[index] for index in sorted(calls)]}
    return _turn_from_message(message)


def _merge_tool_fragment(calls: dict[int, dict[str, Any]], fragment: dict[str, Any]) -> None:
    # The first fragment of a call carries id and name; later ones only more of the arguments string.
    call = calls.setdefault(fragment.get("index", 0), {"id": "", "function": {"name": "", "arguments": ""}})
    call["id"] = fragment.get("id") or call["id"]
    function = fragment.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""
