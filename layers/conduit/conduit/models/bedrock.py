"""`bedrock:<modelId>`: the Bedrock Converse API through boto3 (API.md §7).

The function's role needs `bedrock:InvokeModel` on the model. boto3 is imported
here only, on first use, so functions that never call Bedrock do not load it.
"""

from __future__ import annotations

import json
import time
from functools import cache
from typing import Any

from conduit.errors import ConduitError
from conduit.models import Message, ModelTurn, ToolCall, ToolSpec, checked_tool_call, model_error

MAX_TOKENS = 4096  # the most a turn is held for (credits.py)


@cache
def bedrock_client() -> Any:
    """One client per cold start (creating one costs tens of milliseconds); tests stub this one."""
    import boto3
    from botocore.config import Config

    # The chat deadline is checked around the call; these bound a hung connection, and a single
    # retry absorbs a throttle without outliving the deadline by much.
    config = Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 2})
    return boto3.client("bedrock-runtime", config=config)


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


def converse_params(model: str, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
    params: dict[str, Any] = {"modelId": model, "messages": to_bedrock_messages(messages)}
    if tools:  # an empty tool list is a validation error
        params["toolConfig"] = to_bedrock_tool_config(tools)
    return params


# --- Converse -> our turn -------------------------------------------------------------------------


def from_bedrock_response(response: dict[str, Any]) -> ModelTurn:
    content = ((response.get("output") or {}).get("message") or {}).get("content")
    if not isinstance(content, list):
        raise model_error("bedrock", "the response has no message content")
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        if "text" in block:
            text.append(block["text"])
        elif "toolUse" in block:
            calls.append(_tool_call(block["toolUse"]))
        # other blocks (reasoningContent, ...) are not for the user
    return ModelTurn(text="".join(text), tool_calls=tuple(calls))


def _tool_call(tool_use: dict[str, Any]) -> ToolCall:
    return checked_tool_call("bedrock", "toolUse", tool_use.get("toolUseId"), tool_use.get("name"), tool_use.get("input"))


# --- the provider -------------------------------------------------------------------------------


class BedrockModel:
    def complete(self, model: str, messages: list[Message], tools: list[ToolSpec], *, deadline: float) -> ModelTurn:
        from botocore.exceptions import BotoCoreError, ClientError

        if time.monotonic() >= deadline:
            raise ConduitError("CHAT_TIMEOUT")
        try:
            response = bedrock_client().converse(**converse_params(model, messages, tools))
        except ClientError as exc:
            # Only the error code: Bedrock's messages may quote the request.
            code = exc.response.get("Error", {}).get("Code", "unknown error")
            raise self._failure(deadline, code) from exc
        except BotoCoreError as exc:
            raise self._failure(deadline, type(exc).__name__) from exc
        if time.monotonic() >= deadline:
            raise ConduitError("CHAT_TIMEOUT")
        return from_bedrock_response(response)

    @staticmethod
    def _failure(deadline: float, detail: str) -> ConduitError:
        if time.monotonic() >= deadline:  # e.g. a read timeout that outlived the chat
            return ConduitError("CHAT_TIMEOUT")
        return model_error("bedrock", detail)


def provider() -> BedrockModel:
    return BedrockModel()
