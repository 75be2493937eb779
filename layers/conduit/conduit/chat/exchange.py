"""One chat exchange (API.md §7): the model loop over the session's tools, paid in credits.

The exchange is all or nothing for the conversation: only a successful one
saves its user message and answer. Credits are spent as work happens (each
tool call before it runs; each model turn held before the provider is called and
settled to its actual cost after, see credits.ModelTurnHold), so work done before
a failure stays paid and nothing is done that the balance cannot cover. The whole exchange runs
against one deadline, which bounds every model and tool call in it.

Its events (`text`, `tool_use`, `tool_result`, `done`) go to the exchange's
sink as they happen (`stream_chat` makes them server-sent events); with a sink
the provider streams, and each `text` event is a piece of text as the provider
produced it (API.md §14). The session's system prompt goes through the
provider's system channel. The answer says why it ended (`finishReason`) and
what the model turns used (`usage`, summed over the exchange). A sink that
finds the client gone raises STREAM_ABORTED: the exchange stops at that event,
saves nothing, keeps what it spent, and the abort is recorded in the session.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import Field

from conduit.billing import credits
from conduit.platform.errors import ConduitError
from conduit.platform.ids import iso, new_id, utc_now
from conduit.models import Message, ModelTurn, ToolCall, ToolSpec, Usage, compact, resolve_model
from conduit.platform.observability import logger, metrics
from conduit.repositories.accounts import Account
from conduit.repositories.sessions import SessionsRepository
from conduit.chat.sessions import FinishReason, ToolCallRecord, find_session_with_history
from conduit.platform.settings import get_settings
from conduit.chat.streaming import EventStream
from conduit.vault.toolbox import DEFAULT_MAX_ROUNDS, HISTORY_MESSAGES, AvailableTool, available_tools
from conduit.platform.views import TokenUsage, View


# --- what an exchange answers, and its server-sent events (API.md §7, §14) -------------------


class AssistantMessage(View):
    role: Literal["assistant"]
    content: str = Field(description="The answer; empty when the exchange ended on tool calls (max_rounds)")
    finishReason: FinishReason


class ChatAnswer(View):
    """The answer to one message; the `done` event of a stream carries the same."""

    sessionToken: str
    message: AssistantMessage
    toolCalls: list[ToolCallRecord] = Field(description="Every tool call of the exchange, in order")
    creditsUsed: int = Field(
        description="What the exchange cost: its model turns and the tool calls that reached a site"
    )
    usage: TokenUsage = Field(description="Summed over the exchange's model turns")


class ChatEvent(View):
    """A server-sent event's data; `event` is the event's name."""

    event: ClassVar[str]


class TextEvent(ChatEvent):
    """What the model says: a streaming provider's words as they arrive, else the whole answer at once."""

    event = "text"
    text: str


class ToolUseEvent(ChatEvent):
    """A tool call the model asked for, sent before the call leaves."""

    event = "tool_use"
    id: str = Field(description="The provider's id of the call; the tool_result event names it too")
    tool: str = Field(description="The prefixed tool name")
    arguments: dict[str, Any]


class ToolResultEvent(ChatEvent):
    """How a tool call ended."""

    event = "tool_result"
    id: str
    tool: str
    status: Literal["ok", "error"] = Field(
        description="error: an unknown tool or arguments failing its schema (the result says why; the model is told)"
    )
    result: Any = Field(description="The tool's JSON answer, or the error the model was given")


# The server-sent events of a streamed exchange by name, and their data; a failure ends it with `error`,
# an error body. The OpenAPI document describes each (shared/openapi.py).
STREAM_EVENTS: dict[str, type[View]] = {
    TextEvent.event: TextEvent,
    ToolUseEvent.event: ToolUseEvent,
    ToolResultEvent.event: ToolResultEvent,
    "done": ChatAnswer,
}


@dataclass
class Exchange:
    """What one exchange has done so far."""

    account: Account
    exchange_id: str
    deadline: float
    credits_used: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, Any]] = field(default_factory=list)  # (SSE event, data), in the order they happened
    sink: Callable[[str, Any], None] | None = None  # gets each (event, data) as it happens; may raise STREAM_ABORTED
    account_item: dict[str, Any] | None = None  # the account as the gate read it, until the first credits write

    def emit(self, event: ChatEvent | ChatAnswer) -> None:
        name, data = (event.event if isinstance(event, ChatEvent) else "done"), event.body()
        self.events.append((name, data))
        if self.sink is not None:
            self.sink(name, data)

    def remaining(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ConduitError("CHAT_TIMEOUT")
        return remaining

    def add_usage(self, usage: Usage) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens

    def usage(self) -> dict[str, int]:
        return {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens}

    def charge(self, amount: int, what: str) -> None:
        credits.spend(self.account.account_id, amount, f"chat: {what}", key=f"{self.exchange_id}:{what}")
        self.credits_used += amount

    @contextmanager
    def model_turn(
        self, model: str, system: str | None, messages: list[Message], tools: list[ToolSpec], what: str
    ) -> Iterator[credits.ModelTurnHold]:
        """The credits of one model turn (API.md §15): held before the provider is called,
        settled by `hold.settle(usage)`, released on any other ending; see credits.ModelTurnHold."""
        # A hold outlives a Lambda killed at the deadline only until this lease passes.
        lease_until = time.time() + max(0.0, self.deadline - time.monotonic()) + 60
        # The first turn's credits write starts from the account the gate read (no read of its own);
        # later turns read, the balance having changed since.
        known, self.account_item = self.account_item, None
        hold = credits.hold_model_turn(
            self.account.account_id, model, messages, tools, f"chat: {what}", f"{self.exchange_id}:{what}", lease_until,
            system=system, account_item=known,
        )
        try:
            with hold:
                yield hold
        finally:
            self.credits_used += hold.cost


def _history(stored: list[dict[str, Any]]) -> list[Message]:
    # An exchange that ended on tool calls has an empty answer. Providers drop blank turns, which
    # would leave two user turns in a row (Bedrock refuses that), so the history says so in words.
    return [Message(role=m["role"], content=m["content"] or "(no text answer)") for m in stored]


def _run_tool(exchange: Exchange, tools: dict[str, AvailableTool], call: ToolCall) -> str:
    """Call one tool the model asked for; the result (or a refusal the model can read) as JSON text."""
    tool = tools.get(call.name)
    record = {"tool": call.name, "siteId": tool.site["siteId"] if tool else None, "arguments": call.arguments}
    exchange.emit(ToolUseEvent(id=call.id, tool=call.name, arguments=call.arguments))
    started = time.monotonic()
    if tool is None:  # the model invented it: tell the model, do not fail the exchange
        result = compact({"error": f"There is no tool named {call.name}"})
        exchange.tool_calls.append({**record, "status": "error", "durationMs": 0})
        exchange.emit(ToolResultEvent(id=call.id, tool=call.name, status="error", result=json.loads(result)))
        return result
    from conduit.vault.tool_calls import run_site_tool  # the site-call stack (httpx, manifests, MCP) only when a tool runs

    try:
        charge = lambda cost: exchange.charge(cost, f"tool {len(exchange.tool_calls) + 1}")  # noqa: E731
        outcome = run_site_tool(exchange.account.account_id, tool.site, call.name, call.arguments, charge=charge, remaining=exchange.remaining)
        result = compact(outcome)
        status = "ok"
    except ConduitError as error:
        if error.code == "VALIDATION_ERROR":  # arguments failing the schema go back to the model
            result, status = compact(error.body()), "error"
        elif time.monotonic() >= exchange.deadline:  # the call was cut by the exchange's deadline
            raise ConduitError("CHAT_TIMEOUT") from None
        else:  # the rest end the exchange with their own code
            raise
    exchange.tool_calls.append({**record, "status": status, "durationMs": int((time.monotonic() - started) * 1000)})
    exchange.emit(ToolResultEvent(id=call.id, tool=call.name, status=status, result=json.loads(result)))
    return result


def new_exchange(account: Account) -> Exchange:
    return Exchange(
        account=account,
        exchange_id=new_id("chat"),
        deadline=time.monotonic() + get_settings().chat_timeout_seconds,
        account_item=account.item,
    )


def chat(exchange: Exchange, token: str, message: str, model: str | None) -> dict[str, Any]:
    """Run one exchange; `exchange` records what happened (tool calls, events, credits) even when it fails."""
    # The session and its history in one Query (issue 22: fewer round trips per exchange).
    session, recent = find_session_with_history(token, exchange.account, HISTORY_MESSAGES - 1)
    try:
        return _run(exchange, session, recent, message, model)
    except ConduitError as error:
        if error.code == "STREAM_ABORTED":
            _record_abort(exchange, session)
        raise


def _run(
    exchange: Exchange, session: dict[str, Any], recent: list[dict[str, Any]], message: str, model: str | None
) -> dict[str, Any]:
    account = exchange.account
    provider, model_id = resolve_model(model or session["model"])
    tools = available_tools(account, session)
    messages = [*_history(recent), Message(role="user", content=message)]
    system = session.get("systemPrompt")
    answer, finish_reason, streamed = "", "max_rounds", False
    for round_number in range(1, DEFAULT_MAX_ROUNDS + 1):
        exchange.remaining()
        specs = [t.spec for t in tools.values()]
        pieces: list[str] = []
        with exchange.model_turn(model or session["model"], system, messages, specs, f"model turn {round_number}") as hold:
            turn: ModelTurn = provider.complete(
                model_id,
                messages,
                specs,
                deadline=exchange.deadline,
                system=system,
                on_text=_text_sender(exchange, pieces) if exchange.sink is not None else None,
            )
            hold.settle(turn.usage)
        exchange.add_usage(turn.usage)
        answer, streamed = turn.text, bool(pieces)
        if not turn.tool_calls:  # providers never hand back tool calls with a length or refusal ending
            finish_reason = turn.finish_reason
            break
        if turn.text and not streamed:  # what the model says before its tool calls is sent too
            exchange.emit(TextEvent(text=turn.text))
        messages.append(Message(role="assistant", content=turn.text, tool_calls=turn.tool_calls))
        for call in turn.tool_calls:
            messages.append(Message(role="tool", content=_run_tool(exchange, tools, call), tool_call_id=call.id))
    exchange.remaining()  # an answer that arrives after the deadline is a timeout too
    # The answer reaches the client before it is saved: a client gone by now aborts the exchange here
    # (a streamed answer has reached it piece by piece already).
    if not streamed:
        exchange.emit(TextEvent(text=answer))
    now = iso(utc_now())
    SessionsRepository().append_exchange(
        session,
        [
            {"role": "user", "content": message, "createdAt": now, "seq": 0},
            {
                "role": "assistant",
                "content": answer,
                "createdAt": now,
                "seq": 1,
                "finishReason": finish_reason,
                "toolCallsJson": compact(exchange.tool_calls) if exchange.tool_calls else None,
            },
        ],
    )
    body = ChatAnswer(
        sessionToken=session["sessionToken"],
        message=AssistantMessage(role="assistant", content=answer, finishReason=finish_reason),
        toolCalls=exchange.tool_calls,
        creditsUsed=exchange.credits_used,
        usage=exchange.usage(),
    )
    try:
        exchange.emit(body)
    except ConduitError as error:
        if error.code != "STREAM_ABORTED":
            raise
        # Saved already: a client that leaves now only misses this last event.
    return body.body()


def _text_sender(exchange: Exchange, pieces: list[str]) -> Callable[[str], None]:
    """Each piece of text the provider streams, to the client at once (STREAM_ABORTED stops the turn)."""

    def send(piece: str) -> None:
        pieces.append(piece)
        exchange.emit(TextEvent(text=piece))

    return send


def _record_abort(exchange: Exchange, session: dict[str, Any]) -> None:
    """STREAM_ABORTED (API.md §7): in the session (what was spent, which tools ran), the log and a metric."""
    record = {
        "code": "STREAM_ABORTED",
        "exchangeId": exchange.exchange_id,
        "accountId": exchange.account.account_id,
        "creditsUsed": exchange.credits_used,
        "toolCallsJson": compact(exchange.tool_calls),
        "createdAt": iso(utc_now()),
    }
    SessionsRepository().record_abort(session, record)
    logger.warning("Chat stream aborted by the client", extra={k: v for k, v in record.items() if k != "toolCallsJson"})
    metrics.add_metric(name="ChatStreamsAborted", unit=MetricUnit.Count, value=1)


def stream_chat(exchange: Exchange, token: str, message: str, model: str | None, events: EventStream) -> Response:
    """The exchange as server-sent events: each sent as it happens, an `error` event if it fails."""
    exchange.sink = events.send
    try:
        chat(exchange, token, message, model)
    except ConduitError as error:
        if error.code != "STREAM_ABORTED":  # a client that left is told nothing
            events.fail(error)
    return events.response()
