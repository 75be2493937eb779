"""Model providers behind one interface, selected by `provider:model` (API.md §7).

    provider, model_id = resolve_model("openai:gpt-4o-mini")
    turn = provider.complete(model_id, messages, tools, deadline=deadline, system=prompt, on_text=send)

A turn is text and/or tool calls, why the model stopped (`finish_reason`) and
the tokens it used (API.md §14). `system` goes through the provider's system
channel. With `on_text`, the provider streams: `on_text` gets each piece of text
as the provider produces it (and whatever it raises, STREAM_ABORTED included,
stops the turn); without it the provider answers whole. Providers raise
ConduitError("MODEL_ERROR") when the provider fails (a tool call it cut off
included: it is never run) and ConduitError("CHAT_TIMEOUT") when `deadline`
(time.monotonic()) passes; an unknown provider is a VALIDATION_ERROR.
Provider modules are imported on first use: a function that never calls
Bedrock does not pay for it at cold start.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, Literal, Protocol

from conduit.platform.errors import ConduitError, validation_error


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str  # the published (prefixed) name
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a model turn used, as the provider reported them (0 when it reports none)."""

    input_tokens: int = 0
    output_tokens: int = 0


# Why a turn ended (API.md §14): "stop" (answered, or asked for tools), "length" (cut off at the
# provider's limit), "refusal" (the text is the refusal). "max_rounds" is the exchange's, not a turn's.
FinishReason = Literal["stop", "length", "refusal"]
TextSink = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the conversation. `tool` messages carry a result (JSON text) for `tool_call_id`."""

    role: Literal["user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = field(default=())
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ModelTurn:
    text: str
    tool_calls: tuple[ToolCall, ...] = field(default=())
    usage: Usage = field(default_factory=Usage)
    finish_reason: FinishReason = "stop"


class ModelProvider(Protocol):
    def complete(
        self,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        deadline: float,
        system: str | None = None,
        on_text: TextSink | None = None,
    ) -> ModelTurn: ...


# provider name -> module defining `provider() -> ModelProvider`
PROVIDER_MODULES = {
    "local": "conduit.models.echo",
    "openai": "conduit.models.openai",
    "anthropic": "conduit.models.anthropic",
    "bedrock": "conduit.models.bedrock",
}


def resolve_model(name: str) -> tuple[ModelProvider, str]:
    provider_name, separator, model_id = name.partition(":")
    if not separator or not model_id or provider_name not in PROVIDER_MODULES:
        raise validation_error("model", f"must be provider:model with provider one of {', '.join(PROVIDER_MODULES)}")
    if provider_name == "local" and model_id != "echo":
        raise validation_error("model", "the only local model is local:echo")
    return importlib.import_module(PROVIDER_MODULES[provider_name]).provider(), model_id


def model_error(provider: str, detail: str) -> ConduitError:
    """The one MODEL_ERROR providers raise; the detail says what failed, never a key or a prompt."""
    return ConduitError("MODEL_ERROR", f"The {provider} model failed: {detail}")


def checked_tool_call(provider: str, block: str, call_id: Any, name: Any, arguments: Any) -> ToolCall:
    """A tool call from a provider's answer, or MODEL_ERROR when the provider sent a malformed one."""
    if not (isinstance(call_id, str) and call_id and isinstance(name, str) and name):
        raise model_error(provider, f"a {block} block lacks its id or name")
    if not isinstance(arguments, dict):
        raise model_error(provider, "tool call arguments are not a JSON object")
    return ToolCall(id=call_id, name=name, arguments=arguments)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def token_count(value: Any) -> int:
    """A provider's token count; anything that is not a non-negative integer counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def cut_off_tool_call(provider: str) -> ConduitError:
    """The provider stopped at its length limit inside a tool call: its arguments are incomplete,
    so the call is never run (API.md §14)."""
    return model_error(provider, "the answer was cut off inside a tool call (length limit)")


def declared_tools(messages: list[Message], tools: list[ToolSpec]) -> list[ToolSpec]:
    """`tools`, plus a stand-in for each tool the history calls that is no longer offered.

    Anthropic and Bedrock refuse a history with tool calls when no tool (or not that tool) is
    declared; a tool can disappear between turns (a site deleted or expired). The stand-in only
    keeps the history valid: calling it is answered "there is no tool named ..." as for any
    unknown tool.
    """
    offered = {tool.name for tool in tools}
    missing = dict.fromkeys(
        call.name for message in messages for call in message.tool_calls if call.name not in offered
    )
    return [
        *tools,
        *(ToolSpec(name, "No longer available.", {"type": "object", "properties": {}}) for name in missing),
    ]
