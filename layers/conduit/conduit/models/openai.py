"""`openai:<model>`: any OpenAI-compatible Chat Completions endpoint (API.md §7).

    POST {OPENAI_BASE_URL}/chat/completions   Authorization: Bearer {OPENAI_API_KEY}

Requests go through the guarded outbound client like every other outgoing
call, under its operator policy (the base URL is the operator's, and may be a
private VPC endpoint). The system prompt is the first (`system`) message. With
`on_text` the answer streams (`stream: true`) and each content delta is passed
on as it arrives. `model_response`, `post_json` and `sse_events` are shared with
the Anthropic provider: the HTTP, retry, deadline and error rules are the same
for every HTTP model API.
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
    compact,
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


def request_body(
    model: str, messages: list[Message], tools: list[ToolSpec], system: str | None = None, *, stream: bool = False
) -> dict[str, Any]:
    wire_messages = to_openai_messages(messages)
    if system:
        wire_messages.insert(0, {"role": "system", "content": system})
    # The cap is sent, not only assumed: a priced turn's hold covers at most MAX_TOKENS of output.
    # `max_completion_tokens` (not the deprecated `max_tokens`, which reasoning models refuse).
    body: dict[str, Any] = {"model": model, "messages": wire_messages, "max_completion_tokens": MAX_TOKENS}
    declared = declared_tools(messages, tools)
    if declared:  # an empty tools array is rejected by the API
        body["tools"] = to_openai_tools(declared)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # usage arrives in a last chunk without choices
    return body


# --- Chat Completions -> our turn ---------------------------------------------------------------

# finish_reason -> ours; "tool_calls" and "function_call" are a stop that asks for tools.
_FINISH = {
    "stop": "stop",
    "tool_calls": "stop",
    "function_call": "stop",
    "length": "length",
    "content_filter": "refusal",
}


def from_openai_response(body: Any) -> ModelTurn:
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise model_error("openai", "the response has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise model_error("openai", "the response has no message")
    return _turn_from_message(message, choices[0].get("finish_reason"), _usage(body.get("usage")))


def _usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    return Usage(token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens")))


def _turn_from_message(message: dict[str, Any], finish_reason: Any, usage: Usage) -> ModelTurn:
    """A `message` (or a stream assembled into one): content plus tool calls with JSON-string arguments."""
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise model_error("openai", "the message content is not text")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise model_error("openai", "tool_calls is not a list")
    finish = _FINISH.get(finish_reason, "stop") if isinstance(finish_reason, str) else "stop"
    if calls and finish == "length":
        raise cut_off_tool_call("openai")  # its arguments end mid-JSON: never run
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:  # the model declined: its words are the answer
        return ModelTurn(text=refusal, usage=usage, finish_reason="refusal")
    if finish == "refusal":  # the content filter stopped it: no call made then is run
        return ModelTurn(text=content or "", usage=usage, finish_reason="refusal")
    return ModelTurn(
        text=content or "", tool_calls=tuple(_tool_call(call) for call in calls), usage=usage, finish_reason=finish
    )


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
        settings = openai_settings()
        api_key = settings.api_key
        if api_key is None:
            raise model_error("openai", "OPENAI_API_KEY is not set")
        url = f"{settings.base_url}/chat/completions"
        headers = {"Authorization": f"Bearer {api_key}"}
        body = request_body(model, messages, tools, system, stream=on_text is not None)
        if on_text is None:
            answer = post_json("openai", url, {**headers, "Accept": "application/json"}, body, deadline=deadline)
            return from_openai_response(answer)
        headers["Accept"] = "text/event-stream"
        with model_response("openai", url, headers, body, deadline=deadline) as response:
            return parse_openai_stream(response.iter_lines(), on_text)


def provider() -> OpenAIModel:
    return OpenAIModel()


# --- streamed responses (`"stream": true`), read as they arrive -----------------------------------


def parse_openai_stream(lines: Iterable[str], on_text: TextSink | None = None) -> ModelTurn:
    """Assemble a streamed Chat Completion: text deltas passed on and appended, tool-call fragments
    joined by `index` (a call is complete, and parsed, only once the stream ends)."""
    text: list[str] = []
    refusal: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason: Any = None
    usage = Usage()
    finished = False
    for data in sse_events(lines):
        if data.strip() == "[DONE]":
            finished = True
            break
        chunk = parse_json_object("openai", data, "a stream chunk")
        if "error" in chunk:
            raise model_error("openai", stream_error_detail(chunk.get("error")))
        if isinstance(chunk.get("usage"), dict):
            usage = _usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                raise model_error("openai", "a stream chunk is malformed")
            delta = choice.get("delta") or {}
            for piece, into in ((delta.get("content"), text), (delta.get("refusal"), refusal)):
                if isinstance(piece, str) and piece:
                    into.append(piece)
                    if on_text is not None:
                        on_text(piece)
            for fragment in delta.get("tool_calls") or []:
                _merge_tool_fragment(calls, fragment)
            finish_reason = choice.get("finish_reason") or finish_reason
    if not (finished or finish_reason):
        raise model_error("openai", "the stream ended early")
    message = {
        "content": "".join(text),
        "refusal": "".join(refusal) or None,
        "tool_calls": [calls[index] for index in sorted(calls)],
    }
    return _turn_from_message(message, finish_reason, usage)


def _merge_tool_fragment(calls: dict[int, dict[str, Any]], fragment: Any) -> None:
    # The first fragment of a call carries id and name; later ones only more of the arguments string.
    if not isinstance(fragment, dict):
        raise model_error("openai", "a stream chunk is malformed")
    call = calls.setdefault(fragment.get("index", 0), {"id": "", "function": {"name": "", "arguments": ""}})
    call["id"] = fragment.get("id") or call["id"]
    function = fragment.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""
