"""`bedrock:<modelId>`: the Bedrock Converse API through boto3 (API.md §7).

The function's role needs `bedrock:InvokeModel` (and, for streaming,
`bedrock:InvokeModelWithResponseStream`) on the model. The system prompt is
Converse's `system`; with `on_text` the turn uses ConverseStream. The client comes from
conduit.platform.aws, made on first use.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from conduit.platform.aws import bedrock_runtime_client
from conduit.platform.errors import ConduitError
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
from conduit.models import wire
from conduit.models.wire import parse_json_object

MAX_TOKENS = 4096  # the most a turn is held for (credits.py)




# --- our messages -> Converse ---------------------------------------------------------------------


def to_bedrock_messages(messages: list[Message]) -> list[dict[str, Any]]:
    mapped: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            _append_tool_result(mapped, message)
        elif message.role == "assistant":
            blocks = _assistant_blocks(message)
            if blocks:  # Converse rejects an empty content list
                mapped.append({"role": "assistant", "content": blocks})
        else:
            mapped.append({"role": "user", "content": [{"text": message.content}]})
    return mapped


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    # Converse rejects blank text blocks, so text is only sent when there is some.
    blocks: list[dict[str, Any]] = [{"text": message.content}] if message.content.strip() else []
    for call in message.tool_calls:
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": call.arguments}})
    return blocks


def _append_tool_result(mapped: list[dict[str, Any]], message: Message) -> None:
    """Tool results travel in a user turn; the results of one assistant turn share ONE user message."""
    block = {"toolResult": {"toolUseId": message.tool_call_id, "content": [_tool_result_content(message.content)]}}
    previous = mapped[-1] if mapped else None
    if previous and previous["role"] == "user" and all("toolResult" in item for item in previous["content"]):
        previous["content"].append(block)
    else:
        mapped.append({"role": "user", "content": [block]})


def _tool_result_content(content: str) -> dict[str, Any]:
    # A JSON object goes as a document so the model sees structure; anything else as text.
    try:
        value = json.loads(content)
    except ValueError:
        return {"text": content}
    return {"json": value} if isinstance(value, dict) else {"text": content}


def to_bedrock_tool_config(tools: list[ToolSpec]) -> dict[str, Any]:
    return {"tools": [{"toolSpec": _tool_spec(tool)} for tool in tools]}


def _tool_spec(tool: ToolSpec) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "inputSchema": {"json": tool.input_schema}}


def converse_params(
    model: str, messages: list[Message], tools: list[ToolSpec], system: str | None = None
) -> dict[str, Any]:
    # The cap is sent, not only assumed: a priced turn's hold covers at most MAX_TOKENS of output.
    params: dict[str, Any] = {
        "modelId": model,
        "messages": to_bedrock_messages(messages),
        "inferenceConfig": {"maxTokens": MAX_TOKENS},
    }
    if system:
        params["system"] = [{"text": system}]
    declared = declared_tools(messages, tools)
    if declared:  # an empty tool list is a validation error; a history with toolUse needs its tools
        params["toolConfig"] = to_bedrock_tool_config(declared)
    return params


# --- Converse -> our turn -------------------------------------------------------------------------

# stopReason -> ours (end_turn, tool_use, stop_sequence: a stop).
_FINISH = {
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "refusal",
    "content_filtered": "refusal",
}


def from_bedrock_response(response: dict[str, Any]) -> ModelTurn:
    content = ((response.get("output") or {}).get("message") or {}).get("content")
    if not isinstance(content, list):
        raise model_error("bedrock", "the response has no message content")
    return _turn(content, response.get("stopReason"), _usage(response.get("usage")))


def _turn(content: list[dict[str, Any]], stop_reason: Any, usage: Usage) -> ModelTurn:
    if stop_reason in ("malformed_tool_use", "malformed_model_output"):
        raise model_error("bedrock", f"the model answered {stop_reason}")
    finish = _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        if "text" in block:
            text.append(block["text"])
        elif "toolUse" in block:
            if finish == "length":
                raise cut_off_tool_call("bedrock")
            calls.append(_tool_call(block["toolUse"]))
        # other blocks (reasoningContent, ...) are not for the user
    if finish == "refusal":
        calls = []
    return ModelTurn(text="".join(text), tool_calls=tuple(calls), usage=usage, finish_reason=finish)


def _usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    return Usage(token_count(usage.get("inputTokens")), token_count(usage.get("outputTokens")))


def _tool_call(tool_use: dict[str, Any]) -> ToolCall:
    return checked_tool_call(
        "bedrock", "toolUse", tool_use.get("toolUseId"), tool_use.get("name"), tool_use.get("input")
    )


def parse_converse_stream(events: Iterable[dict[str, Any]], on_text: TextSink | None = None) -> ModelTurn:
    """Assemble a ConverseStream: text deltas passed on as they arrive, toolUse input joined from
    its JSON pieces by block index and parsed once the message is complete."""
    blocks: dict[int, dict[str, Any]] = {}
    tool_input: dict[int, list[str]] = {}
    stop_reason: Any = None
    usage = Usage()
    stopped = False
    for event in events:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool_use = (start.get("start") or {}).get("toolUse")
            if tool_use is not None:
                blocks[start.get("contentBlockIndex", 0)] = {"toolUse": {**tool_use, "input": {}}}
        elif "contentBlockDelta" in event:
            delta_event = event["contentBlockDelta"]
            index, delta = delta_event.get("contentBlockIndex", 0), delta_event.get("delta") or {}
            if isinstance(delta.get("text"), str):
                block = blocks.setdefault(index, {"text": ""})
                block["text"] = block.get("text", "") + delta["text"]
                if delta["text"] and on_text is not None:
                    on_text(delta["text"])
            elif "toolUse" in delta:
                tool_input.setdefault(index, []).append((delta["toolUse"] or {}).get("input") or "")
        elif "messageStop" in event:
            stop_reason, stopped = event["messageStop"].get("stopReason"), True
        elif "metadata" in event:
            usage = _usage(event["metadata"].get("usage"))
    if not stopped:
        raise model_error("bedrock", "the stream ended early")
    if _FINISH.get(stop_reason) != "length":
        for index, pieces in tool_input.items():
            if "".join(pieces) and "toolUse" in blocks.get(index, {}):
                blocks[index]["toolUse"]["input"] = parse_json_object("bedrock", "".join(pieces), "tool call arguments")
    return _turn([blocks[index] for index in sorted(blocks)], stop_reason, usage)


# --- the provider -------------------------------------------------------------------------------


class BedrockModel:
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
        from botocore.exceptions import BotoCoreError, ClientError

        params = converse_params(model, messages, tools, system)
        try:
            answer = self._call_with_retries(on_text is not None, params, deadline)
            if on_text is None:
                turn = from_bedrock_response(answer)
            else:
                # Events are read as they arrive; an error event mid-stream raises a ClientError here,
                # and is not retried: the text already passed on would be sent twice.
                turn = parse_converse_stream(answer["stream"], on_text)
        except ClientError as exc:
            # Only the error code: Bedrock's messages may quote the request.
            code = exc.response.get("Error", {}).get("Code", "unknown error")
            raise self._failure(deadline, code) from exc
        except BotoCoreError as exc:
            raise self._failure(deadline, type(exc).__name__) from exc
        if time.monotonic() >= deadline:
            raise ConduitError("CHAT_TIMEOUT")
        return turn

    @staticmethod
    def _call_with_retries(stream: bool, params: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Converse, or ConverseStream up to its first event. A throttle, 5xx or model-not-ready answer
        is retried as the HTTP providers' are (wire.retry_wait: at most twice, with backoff), unless
        the wait would outlive `deadline`; the last ClientError is raised."""
        from botocore.exceptions import ClientError

        client = bedrock_runtime_client()
        call = client.converse_stream if stream else client.converse
        for attempt in range(wire.MAX_RETRIES + 1):
            if time.monotonic() >= deadline:
                raise ConduitError("CHAT_TIMEOUT")
            try:
                return call(**params)
            except ClientError as exc:
                metadata = exc.response.get("ResponseMetadata") or {}
                status = int(metadata.get("HTTPStatusCode") or 0)
                wait = wire.retry_wait(status, metadata.get("HTTPHeaders") or {}, attempt)
                if wait is None or attempt == wire.MAX_RETRIES or time.monotonic() + wait >= deadline:
                    raise
                wire._sleep(wait)  # looked up here: tests count the waits instead of waiting
        raise AssertionError("unreachable")  # the last attempt returns or raises

    @staticmethod
    def _failure(deadline: float, detail: str) -> ConduitError:
        if time.monotonic() >= deadline:  # e.g. a read timeout that outlived the chat
            return ConduitError("CHAT_TIMEOUT")
        return model_error("bedrock", detail)


def provider() -> BedrockModel:
    return BedrockModel()
