"""`local:echo`: the deterministic offline model of API.md §7, for development and tests.

For each line of the user message reading `call <prefixedToolName> <json object>`
it calls that tool, one per turn, in order; then it answers with one line per
call, `<prefixedToolName> -> <compact JSON result>`. A message with no such
line is answered `echo: <message>`. The system prompt's `call` lines come first
(API.md §8: an agent's prompt may plan the calls, its run input is the message).
It never streams: a client gets its answer as one `text` event.

Its usage is deterministic, so priced turns can be tested end to end: a token
is 4 characters (rounded up) of what it read (the system prompt and every message) and
of what it wrote (its text and tool calls).
"""

from __future__ import annotations

import json
import re
import time

from conduit.platform import safe_json
from conduit.platform.errors import ConduitError
from conduit.models import Message, ModelTurn, TextSink, ToolCall, ToolSpec, Usage

MAX_TOKENS = 4096  # the most a turn is held for (credits.py); echo's answers stay far below it
_CALL_LINE = re.compile(r"^\s*call\s+(\S+)\s+(\{.*\})\s*$")


def planned_calls(message: str) -> list[tuple[str, dict]]:
    calls = []
    for line in message.splitlines():
        match = _CALL_LINE.match(line)
        if match:
            try:
                arguments = safe_json.loads(match.group(2))
            except ValueError:
                continue  # not a call line: a line that only looks like one
            if isinstance(arguments, dict):
                calls.append((match.group(1), arguments))
    return calls


def _tokens(characters: int) -> int:
    return -(-characters // 4)


def _with_usage(system: str | None, messages: list[Message], turn: ModelTurn) -> ModelTurn:
    read = len(system or "") + sum(len(message.content) for message in messages)
    written = len(turn.text) + sum(len(call.name) + len(json.dumps(call.arguments)) for call in turn.tool_calls)
    return ModelTurn(text=turn.text, tool_calls=turn.tool_calls, usage=Usage(_tokens(read), _tokens(written)))


class EchoModel:
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
        return _with_usage(system, messages, self._turn(messages, deadline, system))

    def _turn(self, messages: list[Message], deadline: float, system: str | None) -> ModelTurn:
        if time.monotonic() > deadline:
            raise ConduitError("CHAT_TIMEOUT")
        last_user = max(index for index, message in enumerate(messages) if message.role == "user")
        user_message = messages[last_user].content
        results = [message for message in messages[last_user + 1 :] if message.role == "tool"]
        calls = planned_calls(system or "") + planned_calls(user_message)
        if not calls:
            return ModelTurn(text=f"echo: {user_message}")
        if len(results) < len(calls):
            name, arguments = calls[len(results)]
            return ModelTurn(text="", tool_calls=(ToolCall(id=f"call_{len(results) + 1}", name=name, arguments=arguments),))
        return ModelTurn(text="\n".join(f"{name} -> {result.content}" for (name, _), result in zip(calls, results)))


def provider() -> EchoModel:
    return EchoModel()
