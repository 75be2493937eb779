"""Model providers behind one interface, selected by `provider:model` (API.md §7).

    provider, model_id = resolve_model("openai:gpt-4o-mini")
    turn = provider.complete(model_id, messages, tools, deadline=deadline)

A turn is text and/or tool calls. Providers raise ConduitError("MODEL_ERROR")
when the provider fails and ConduitError("CHAT_TIMEOUT") when `deadline`
(time.monotonic()) passes; an unknown provider is a VALIDATION_ERROR.
Provider modules are imported on first use: a function that never calls
Bedrock does not pay for it at cold start.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from conduit.errors import ConduitError, validation_error


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


class ModelProvider(Protocol):
    def complete(
        self, model: str, messages: list[Message], tools: list[ToolSpec], *, deadline: float
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
