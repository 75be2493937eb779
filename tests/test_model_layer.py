"""The model layer of API.md §14: streaming, system prompts, finish reasons, retries, usage.

Request bodies are checked against the official SDKs' request types; responses and stream events
are built with the SDKs' own models (`openai`, `anthropic`: test dependencies only). The HTTP
providers talk to the loopback model server of test_model_providers, which can stream slowly,
pause until the client has seen what came before, cut an answer off or fail mid-stream. Bedrock's
ConverseStream goes through botocore's Stubber and botocore's own event-stream parser.
"""

from __future__ import annotations

import binascii
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from anthropic.types import (
    InputJSONDelta,
    MessageDeltaUsage,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
)
from anthropic.types import Message as AnthropicMessage
from anthropic.types import Usage as AnthropicUsage
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming, MessageCreateParamsStreaming
from anthropic.types.raw_message_delta_event import Delta as MessageDelta
from botocore.eventstream import EventStream
from botocore.parsers import EventStreamJSONParser
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta, ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction
from openai.types.chat.chat_completion_message_function_tool_call import ChatCompletionMessageFunctionToolCall, Function
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from openai.types.completion_usage import CompletionUsage

from conduit.platform import aws as aws_clients
from conduit.platform.errors import ConduitError
from conduit.billing import pricing
from conduit.models import Message, ModelTurn, ToolCall, Usage, resolve_model
from conduit.models import bedrock, wire
from conduit.net.outbound import GuardedClient, OutboundRefused
from tests.sdk_types import assert_conforms, problems
from tests.model_server import ModelServer
from tests.test_model_providers import (  # noqa: F401  (model_server and provider_env are fixtures)
    HISTORY,
    TOOLS,
    in_time,
    model_server,
    provider_env,
)

SYSTEM = "You are terse. Answer in French."
ASK = [Message(role="user", content="Weather in Paris?")]


def complete(name: str, messages: list[Message] = ASK, tools: Any = TOOLS, **options: Any) -> ModelTurn:
    provider, model = resolve_model(name)
    return provider.complete(model, messages, tools, deadline=options.pop("deadline", in_time()), **options)


class Writer:
    """An `on_text` that records what arrived, in order with the server's own log, and lets a paused
    server go on once the first piece has arrived."""

    def __init__(self, server: ModelServer, resume: threading.Event | None = None) -> None:
        self.server, self.resume, self.pieces = server, resume, []

    def __call__(self, piece: str) -> None:
        self.pieces.append(piece)
        self.server.log.append(f"text {piece!r}")
        if self.resume is not None:
            self.resume.set()


def assert_seen_while_writing(server: ModelServer, first_piece: str) -> None:
    """The client had the first piece while the server still held back the rest."""
    assert "server gave up waiting" not in server.log, server.log
    assert server.log.index(f"text {first_piece!r}") < server.log.index("server resumes"), server.log


# --- OpenAI: bodies and events from the SDK ------------------------------------------------------


def openai_completion(message: ChatCompletionMessage, finish_reason: str) -> dict[str, Any]:
    return ChatCompletion(
        id="chatcmpl-1",
        object="chat.completion",
        created=1767225600,
        model="gpt-x",
        choices=[Choice(index=0, message=message, finish_reason=finish_reason)],
        usage=CompletionUsage(prompt_tokens=42, completion_tokens=7, total_tokens=49),
    ).model_dump(mode="json")


def openai_chunk(delta: ChoiceDelta | None = None, finish_reason: str | None = None, usage: bool = False) -> str:
    chunk = ChatCompletionChunk(
        id="chatcmpl-1",
        object="chat.completion.chunk",
        created=1767225600,
        model="gpt-x",
        choices=[] if delta is None else [ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)],
        usage=CompletionUsage(prompt_tokens=42, completion_tokens=7, total_tokens=49) if usage else None,
    )
    return f"data: {chunk.model_dump_json()}\n\n"


def openai_text(text: str) -> str:
    return openai_chunk(ChoiceDelta(content=text))


def openai_fragment(index: int, arguments: str, call_id: str | None = None) -> str:
    function = ChoiceDeltaToolCallFunction(name="weather__forecast" if call_id else None, arguments=arguments)
    call = ChoiceDeltaToolCall(index=index, id=call_id, type="function" if call_id else None, function=function)
    return openai_chunk(ChoiceDelta(tool_calls=[call]))


OPENAI_END = [openai_chunk(ChoiceDelta(), "stop"), openai_chunk(usage=True), "data: [DONE]\n\n"]


def test_openai_request_bodies_conform_to_the_sdk_types(provider_env: ModelServer) -> None:
    provider_env.reply(openai_completion(ChatCompletionMessage(role="assistant", content="Oui."), "stop"))
    provider_env.stream(openai_text("Oui."), *OPENAI_END)

    complete("openai:gpt-x", HISTORY, system=SYSTEM)
    complete("openai:gpt-x", HISTORY, system=SYSTEM, on_text=lambda piece: None)

    whole, streamed = (request.body for request in provider_env.received)
    assert_conforms(whole, CompletionCreateParamsNonStreaming)
    assert_conforms(streamed, CompletionCreateParamsStreaming)
    # The system prompt is the first message; the stream asks for usage.
    assert whole["messages"][0] == streamed["messages"][0] == {"role": "system", "content": SYSTEM}
    assert (streamed["stream"], streamed["stream_options"]) == (True, {"include_usage": True})
    # The output cap the credit hold assumes is the one the provider is told.
    assert whole["max_completion_tokens"] == streamed["max_completion_tokens"] == pricing.max_output_tokens("openai:gpt-x")
    assert provider_env.received[1].headers["accept"] == "text/event-stream"
    # The check itself fails on what the API would refuse.
    assert problems({**whole, "system": SYSTEM}, CompletionCreateParamsNonStreaming)
    assert problems({**whole, "messages": [{"role": "robot", "content": "x"}]}, CompletionCreateParamsNonStreaming)


def test_openai_streams_text_as_the_model_writes_it(provider_env: ModelServer) -> None:
    resume = threading.Event()
    provider_env.stream(openai_chunk(ChoiceDelta(role="assistant", content="")), openai_text("Il fait"), resume,
                        openai_text(" beau."), *OPENAI_END)
    writer = Writer(provider_env, resume)

    turn = complete("openai:gpt-x", on_text=writer)

    assert_seen_while_writing(provider_env, "Il fait")
    assert writer.pieces == ["Il fait", " beau."]
    assert turn == ModelTurn(text="Il fait beau.", usage=Usage(42, 7), finish_reason="stop")


def test_openai_assembles_streamed_tool_calls_by_index(provider_env: ModelServer) -> None:
    # Two calls whose fragments interleave; text before them streams, the calls do not.
    provider_env.stream(
        openai_text("Je regarde."),
        openai_fragment(0, "", "call_a"),
        openai_fragment(1, '{"ci', "call_b"),
        openai_fragment(0, '{"city": "Pa'),
        openai_fragment(1, 'ty": "Rome"}'),
        openai_fragment(0, 'ris"}'),
        openai_chunk(ChoiceDelta(), "tool_calls"),
        openai_chunk(usage=True),
        "data: [DONE]\n\n",
    )
    writer = Writer(provider_env)

    turn = complete("openai:gpt-x", on_text=writer)

    assert writer.pieces == ["Je regarde."]
    assert turn.tool_calls == (
        ToolCall("call_a", "weather__forecast", {"city": "Paris"}),
        ToolCall("call_b", "weather__forecast", {"city": "Rome"}),
    )
    assert (turn.finish_reason, turn.usage) == ("stop", Usage(42, 7))


def test_openai_answer_cut_off_at_the_length_limit_says_so(provider_env: ModelServer) -> None:
    provider_env.reply(openai_completion(ChatCompletionMessage(role="assistant", content="Il fait be"), "length"))
    provider_env.stream(openai_text("Il fait be"), openai_chunk(ChoiceDelta(), "length"), "data: [DONE]\n\n")

    assert complete("openai:gpt-x").finish_reason == "length"
    assert complete("openai:gpt-x", on_text=lambda piece: None) == ModelTurn("Il fait be", finish_reason="length")


def test_openai_tool_call_cut_off_is_a_model_error(provider_env: ModelServer) -> None:
    cut = ChatCompletionMessageFunctionToolCall(
        id="call_a", type="function", function=Function(name="weather__forecast", arguments='{"city": "Pa')
    )
    provider_env.reply(openai_completion(ChatCompletionMessage(role="assistant", tool_calls=[cut]), "length"))
    provider_env.stream(openai_fragment(0, '{"city": "Pa', "call_a"), openai_chunk(ChoiceDelta(), "length"))

    for options in ({}, {"on_text": lambda piece: None}):
        with pytest.raises(ConduitError) as error:
            complete("openai:gpt-x", **options)
        assert error.value.code == "MODEL_ERROR" and "cut off inside a tool call" in error.value.message


def test_openai_refusals_are_returned_as_such(provider_env: ModelServer) -> None:
    refusal = "I can't help with that."
    provider_env.reply(openai_completion(ChatCompletionMessage(role="assistant", refusal=refusal), "stop"))
    provider_env.stream(openai_chunk(ChoiceDelta(refusal="I can't ")), openai_chunk(ChoiceDelta(refusal="help with that.")),
                        *OPENAI_END)
    writer = Writer(provider_env)

    assert complete("openai:gpt-x") == ModelTurn(refusal, usage=Usage(42, 7), finish_reason="refusal")
    assert complete("openai:gpt-x", on_text=writer) == ModelTurn(refusal, usage=Usage(42, 7), finish_reason="refusal")
    assert "".join(writer.pieces) == refusal


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, wait", [({"Retry-After": "3"}, 3.0), ({"retry-after-ms": "250", "Retry-After": "1"}, 0.25), ({}, 0.5)]
)
def test_a_429_is_retried_after_the_wait_it_asks_for(provider_env: ModelServer, headers: dict, wait: float) -> None:
    provider_env.reply({"error": {"type": "requests", "code": "rate_limit_exceeded"}}, status=429, headers=headers)
    provider_env.reply(openai_completion(ChatCompletionMessage(role="assistant", content="Oui."), "stop"))

    assert complete("openai:gpt-x").text == "Oui."
    assert provider_env.waits == [wait]
    assert len(provider_env.received) == 2


def test_an_overloaded_anthropic_answer_is_retried_then_streams(provider_env: ModelServer) -> None:
    provider_env.reply({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, status=529)
    provider_env.stream(*anthropic_events(text=["Oui."]))

    assert complete("anthropic:claude-x", on_text=lambda piece: None).text == "Oui."
    assert (provider_env.waits, len(provider_env.received)) == ([0.5], 2)


def test_a_wait_past_the_deadline_is_not_waited(provider_env: ModelServer) -> None:
    provider_env.reply({"error": {"code": "rate_limit_exceeded"}}, status=429, headers={"Retry-After": "60"})

    with pytest.raises(ConduitError) as error:
        complete("openai:gpt-x", deadline=in_time(5))

    assert error.value.message == "The openai model failed: HTTP 429 (rate_limit_exceeded)"
    assert (provider_env.waits, len(provider_env.received)) == ([], 1)


def test_a_client_error_is_not_retried_and_keeps_the_provider_code(provider_env: ModelServer) -> None:
    provider_env.reply(
        {"error": {"message": "This model's maximum context length is ...", "type": "invalid_request_error",
                   "param": "messages", "code": "context_length_exceeded"}},
        status=400,
    )

    with pytest.raises(ConduitError) as error:
        complete("openai:gpt-x")

    assert (error.value.code, error.value.status) == ("MODEL_ERROR", 502)
    assert error.value.message == "The openai model failed: HTTP 400 (context_length_exceeded)"
    assert (provider_env.waits, len(provider_env.received)) == ([], 1)


@pytest.mark.parametrize(
    "tail, detail",
    [
        ([], "the stream ended early"),  # the connection closes mid-answer
        (['data: {"error": {"message": "boom", "type": "server_error", "code": "server_error"}}\n\n'],
         "the stream reported an error (server_error)"),
    ],
)
def test_a_stream_that_fails_midway_is_a_model_error(provider_env: ModelServer, tail: list[str], detail: str) -> None:
    provider_env.stream(openai_text("Il fait"), *tail)
    writer = Writer(provider_env)

    with pytest.raises(ConduitError) as error:
        complete("openai:gpt-x", on_text=writer)

    assert error.value.code == "MODEL_ERROR" and detail in error.value.message
    assert writer.pieces == ["Il fait"]  # what came before the failure was passed on as it came
    assert provider_env.waits == []  # text already sent is never sent twice by a retry


def test_a_streamed_answer_larger_than_the_cap_is_a_model_error(
    provider_env: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "MAX_RESPONSE_BYTES", 4096)
    provider_env.stream(*[openai_text("x" * 100)] * 100, *OPENAI_END)

    with pytest.raises(ConduitError) as error:
        complete("openai:gpt-x", on_text=lambda piece: None)

    assert error.value.code == "MODEL_ERROR" and "larger than 4096 bytes" in error.value.message


# --- Anthropic ---------------------------------------------------------------------------------


def anthropic_message(*content: Any, stop_reason: str) -> dict[str, Any]:
    return AnthropicMessage(
        id="msg_1", type="message", role="assistant", model="claude-x", content=list(content),
        stop_reason=stop_reason, stop_sequence=None, usage=AnthropicUsage(input_tokens=42, output_tokens=7),
    ).model_dump(mode="json")


def _sse(event: Any) -> str:
    return f"event: {event.type}\ndata: {event.model_dump_json()}\n\n"


def anthropic_events(
    text: list[Any] = (), tool_json: list[str] | None = None, stop_reason: str = "end_turn"
) -> list[Any]:
    """A whole stream: message_start, a text block (its pieces; a threading.Event pauses there),
    optionally a tool_use block built from `tool_json` pieces, message_delta, message_stop."""
    start = AnthropicMessage(
        id="msg_1", type="message", role="assistant", model="claude-x", content=[], stop_reason=None,
        stop_sequence=None, usage=AnthropicUsage(input_tokens=42, output_tokens=1),
    )
    items: list[Any] = [_sse(RawMessageStartEvent(type="message_start", message=start))]
    items.append(_sse(RawContentBlockStartEvent(type="content_block_start", index=0,
                                                content_block=TextBlock(type="text", text=""))))
    for piece in text:
        if isinstance(piece, threading.Event):
            items.append(piece)
        else:
            items.append(_sse(RawContentBlockDeltaEvent(type="content_block_delta", index=0,
                                                        delta=TextDelta(type="text_delta", text=piece))))
    items.append(_sse(RawContentBlockStopEvent(type="content_block_stop", index=0)))
    if tool_json is not None:
        block = ToolUseBlock(type="tool_use", id="toolu_1", name="weather__forecast", input={})
        items.append(_sse(RawContentBlockStartEvent(type="content_block_start", index=1, content_block=block)))
        for piece in tool_json:
            delta = InputJSONDelta(type="input_json_delta", partial_json=piece)
            items.append(_sse(RawContentBlockDeltaEvent(type="content_block_delta", index=1, delta=delta)))
        items.append(_sse(RawContentBlockStopEvent(type="content_block_stop", index=1)))
    items.append(_sse(RawMessageDeltaEvent(
        type="message_delta", delta=MessageDelta(stop_reason=stop_reason, stop_sequence=None),
        usage=MessageDeltaUsage(output_tokens=30),
    )))
    items.append(_sse(RawMessageStopEvent(type="message_stop")))
    return items


def test_anthropic_request_bodies_conform_and_carry_the_system_prompt(provider_env: ModelServer) -> None:
    provider_env.reply(anthropic_message(TextBlock(type="text", text="Oui."), stop_reason="end_turn"))
    provider_env.stream(*anthropic_events(text=["Oui."]))

    complete("anthropic:claude-x", HISTORY, system=SYSTEM)
    complete("anthropic:claude-x", HISTORY, system=SYSTEM, on_text=lambda piece: None)

    whole, streamed = (request.body for request in provider_env.received)
    assert_conforms(whole, MessageCreateParamsNonStreaming)
    assert_conforms(streamed, MessageCreateParamsStreaming)
    assert whole["system"] == streamed["system"] == SYSTEM
    assert all(message["role"] != "system" for message in whole["messages"])
    assert streamed["stream"] is True
    assert problems({**whole, "stream_options": {}}, MessageCreateParamsNonStreaming)


def test_anthropic_streams_text_and_assembles_tool_input(provider_env: ModelServer) -> None:
    resume = threading.Event()
    provider_env.stream(*anthropic_events(text=["Je ", resume, "regarde."], tool_json=['{"city"', ': "Paris"}'],
                                          stop_reason="tool_use"))
    writer = Writer(provider_env, resume)

    turn = complete("anthropic:claude-x", on_text=writer)

    assert_seen_while_writing(provider_env, "Je ")
    assert writer.pieces == ["Je ", "regarde."]
    assert turn == ModelTurn(
        "Je regarde.", (ToolCall("toolu_1", "weather__forecast", {"city": "Paris"}),), Usage(42, 30), "stop"
    )


def test_anthropic_tool_use_cut_off_at_max_tokens_is_never_run(provider_env: ModelServer) -> None:
    provider_env.reply(anthropic_message(
        TextBlock(type="text", text="Je regarde."),
        ToolUseBlock(type="tool_use", id="toolu_1", name="weather__forecast", input={}),  # what the API sends then
        stop_reason="max_tokens",
    ))
    provider_env.stream(*anthropic_events(text=["Je regarde."], tool_json=['{"city": "Pa'], stop_reason="max_tokens"))

    for options in ({}, {"on_text": lambda piece: None}):
        with pytest.raises(ConduitError) as error:
            complete("anthropic:claude-x", **options)
        assert error.value.code == "MODEL_ERROR" and "cut off inside a tool call" in error.value.message


def test_anthropic_length_and_refusal_endings(provider_env: ModelServer) -> None:
    provider_env.reply(anthropic_message(TextBlock(type="text", text="Il fait be"), stop_reason="max_tokens"))
    provider_env.stream(*anthropic_events(text=["Je ne peux pas."], stop_reason="refusal"))

    assert complete("anthropic:claude-x") == ModelTurn("Il fait be", usage=Usage(42, 7), finish_reason="length")
    assert complete("anthropic:claude-x", on_text=lambda piece: None) == ModelTurn(
        "Je ne peux pas.", usage=Usage(42, 30), finish_reason="refusal"
    )


def test_anthropic_error_event_mid_stream_keeps_its_type(provider_env: ModelServer) -> None:
    error_event = 'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    provider_env.stream(*anthropic_events(text=["Je "])[:3], error_event)

    with pytest.raises(ConduitError) as error:
        complete("anthropic:claude-x", on_text=lambda piece: None)

    assert error.value.message == "The anthropic model failed: the stream reported an error (overloaded_error)"


@pytest.mark.parametrize("name", ["anthropic:claude-x", "openai:gpt-x"])
def test_tools_stay_declared_while_the_history_calls_them(provider_env: ModelServer, name: str) -> None:
    # The site went away between turns: no tools are offered, but the history holds calls to one.
    reply = (
        anthropic_message(TextBlock(type="text", text="Oui."), stop_reason="end_turn")
        if name.startswith("anthropic")
        else openai_completion(ChatCompletionMessage(role="assistant", content="Oui."), "stop")
    )
    provider_env.reply(reply)
    provider_env.reply(reply)

    complete(name, HISTORY, tools=[])
    complete(name, ASK, tools=[])

    with_calls, without = (request.body for request in provider_env.received)
    declared = with_calls["tools"]
    assert [tool.get("name") or tool["function"]["name"] for tool in declared] == ["weather__forecast"]
    assert "tools" not in without


# --- Bedrock (ConverseStream through the Stubber and botocore's event-stream parser) ---------------


def _event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of the AWS event stream encoding (prelude, string headers, payload, CRCs)."""
    encoded = b"".join(
        len(name).to_bytes(1, "big") + name.encode() + b"\x07" + len(value).to_bytes(2, "big") + value.encode()
        for name, value in headers.items()
    )
    prelude = (16 + len(encoded) + len(payload)).to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    message = prelude + binascii.crc32(prelude).to_bytes(4, "big") + encoded + payload
    return message + binascii.crc32(message).to_bytes(4, "big")


class RawEvents:
    """The HTTP body botocore reads an event stream from; logs each message as it is handed over."""

    def __init__(self, events: list[dict[str, Any]], log: list[str]) -> None:
        self.events, self.log = events, log

    def stream(self) -> Iterator[bytes]:
        for number, event in enumerate(self.events):
            ((name, body),) = event.items()
            kind = "exception" if name.endswith("Exception") else "event"
            headers = {":message-type": kind, f":{kind}-type": name, ":content-type": "application/json"}
            self.log.append(f"sent {number}")
            yield _event_message(headers, json.dumps(body).encode())

    def close(self) -> None:
        pass


@pytest.fixture
def converse_stream() -> Iterator[Any]:
    """add(events, expected_params): the next converse_stream call answers these events."""
    client = aws_clients.bedrock_runtime_client()
    shape = client.meta.service_model.operation_model("ConverseStream").output_shape.members["stream"]
    queued: list[list[dict[str, Any]]] = []
    log: list[str] = []

    def answer(parsed: dict[str, Any], **_: Any) -> None:
        parsed["stream"] = EventStream(RawEvents(queued.pop(0), log), shape, EventStreamJSONParser(), "ConverseStream")

    def add(events: list[dict[str, Any]], expected_params: dict[str, Any]) -> None:
        for event in events:
            if not next(iter(event)).endswith("Exception"):
                validate_parameters(event, shape)  # each event is one botocore's model allows
        stubber.add_response("converse_stream", {}, expected_params)
        queued.append(events)

    client.meta.events.register("after-call.bedrock-runtime.ConverseStream", answer)
    with Stubber(client) as stubber:
        add.log = log  # type: ignore[attr-defined]
        yield add
        stubber.assert_no_pending_responses()
    client.meta.events.unregister("after-call.bedrock-runtime.ConverseStream", answer)


def bedrock_events(*middle: dict[str, Any], stop_reason: str = "end_turn") -> list[dict[str, Any]]:
    return [
        {"messageStart": {"role": "assistant"}},
        *middle,
        {"messageStop": {"stopReason": stop_reason}},
        {"metadata": {"usage": {"inputTokens": 42, "outputTokens": 7, "totalTokens": 49}, "metrics": {"latencyMs": 9}}},
    ]


def text_delta(text: str) -> dict[str, Any]:
    return {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": text}}}


BEDROCK_ASK = {
    "modelId": "m",
    "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
    "inferenceConfig": {"maxTokens": 4096},
}


def test_bedrock_converse_stream_passes_text_on_as_it_arrives(converse_stream: Any) -> None:
    converse_stream(
        bedrock_events(
            text_delta("Il fait"),
            text_delta(" beau."),
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"contentBlockStart": {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_1", "name": "weather__forecast"}}}},
            {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": '}}}},
            {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}},
            {"contentBlockStop": {"contentBlockIndex": 1}},
            stop_reason="tool_use",
        ),
        {**BEDROCK_ASK, "system": [{"text": SYSTEM}], "toolConfig": bedrock.to_bedrock_tool_config(TOOLS)},
    )
    log = converse_stream.log

    turn = complete("bedrock:m", system=SYSTEM, on_text=lambda piece: log.append(f"text {piece!r}"))

    # Each piece reached the client before the next event was even read.
    assert log[:5] == ["sent 0", "sent 1", "text 'Il fait'", "sent 2", "text ' beau.'"]
    assert turn == ModelTurn(
        "Il fait beau.", (ToolCall("tu_1", "weather__forecast", {"city": "Paris"}),), Usage(42, 7), "stop"
    )


@pytest.mark.parametrize(
    "events, expected",
    [
        (bedrock_events(text_delta("Il fait be"), stop_reason="max_tokens"), ModelTurn("Il fait be", (), Usage(42, 7), "length")),
        (bedrock_events(text_delta("Non."), stop_reason="guardrail_intervened"), ModelTurn("Non.", (), Usage(42, 7), "refusal")),
    ],
)
def test_bedrock_stream_finish_reasons(converse_stream: Any, events: list, expected: ModelTurn) -> None:
    converse_stream(events, BEDROCK_ASK)
    assert complete("bedrock:m", tools=[], on_text=lambda piece: None) == expected


@pytest.mark.parametrize(
    "events, detail",
    [
        (bedrock_events(
            {"contentBlockStart": {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tu_1", "name": "weather__forecast"}}}},
            {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"city": "Pa'}}}},
            stop_reason="max_tokens",
        ), "cut off inside a tool call"),
        ([{"messageStart": {"role": "assistant"}}, text_delta("Il"), {"modelStreamErrorException": {"message": "boom"}}],
         "modelStreamErrorException"),
        ([{"messageStart": {"role": "assistant"}}, text_delta("Il")], "the stream ended early"),
    ],
)
def test_bedrock_stream_failures_are_model_errors(converse_stream: Any, events: list, detail: str) -> None:
    converse_stream(events, BEDROCK_ASK)
    with pytest.raises(ConduitError) as error:
        complete("bedrock:m", tools=[], on_text=lambda piece: None)
    assert error.value.code == "MODEL_ERROR" and detail in error.value.message


def test_bedrock_declares_tools_the_history_calls() -> None:
    params = bedrock.converse_params("m", HISTORY, [], SYSTEM)
    assert [tool["toolSpec"]["name"] for tool in params["toolConfig"]["tools"]] == ["weather__forecast"]
    assert params["system"] == [{"text": SYSTEM}]
    assert params["inferenceConfig"] == {"maxTokens": pricing.max_output_tokens("bedrock:m")}  # what the hold assumes
    assert "toolConfig" not in bedrock.converse_params("m", ASK, [])


# --- the operator policy of the guarded client ---------------------------------------------------


def resolving_to(address: str) -> Any:
    return lambda host, port: [address]


@pytest.mark.parametrize("url, address", [
    ("https://llm.corp.example/v1", "10.0.3.7"),  # an OpenAI-compatible server in the VPC
    ("http://vllm.service.internal:8000/v1", "172.20.1.9"),  # plain http inside the VPC
    ("https://vpce-0abc.bedrock-runtime.us-east-1.vpce.amazonaws.com", "10.0.0.12"),  # an interface endpoint
    ("http://localhost:11434/v1", "127.0.0.1"),  # a model on the same host
])
def test_operator_endpoints_may_be_private_but_user_urls_may_not(url: str, address: str) -> None:
    operator = GuardedClient(allow_loopback=False, resolver=resolving_to(address), policy="operator")
    assert operator.check_url(url)
    with pytest.raises(OutboundRefused):
        GuardedClient(allow_loopback=False, resolver=resolving_to(address)).check_url(url)


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "0.0.0.0", "224.0.0.1"])
def test_operator_endpoints_never_reach_the_metadata_service(address: str) -> None:
    operator = GuardedClient(allow_loopback=False, resolver=resolving_to(address), policy="operator")
    with pytest.raises(OutboundRefused):
        operator.check_url("http://llm.corp.example/v1")


# --- provider keys in Secrets Manager ------------------------------------------------------------


@pytest.fixture
def keys_in_secrets_manager(aws: None, provider_env: ModelServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """As in AWS: no key in the environment, the secrets named by *_API_KEY_ID, local mode off."""
    import boto3
    from aws_lambda_powertools.utilities import parameters

    from conduit.models import anthropic, openai
    from conduit.platform.settings import get_settings

    secrets = boto3.client("secretsmanager")
    # The template's secret, as the operator fills it in after deploying; the other is deleted.
    openai_arn = secrets.put_secret_value(SecretId="OpenAiApiKeySecret", SecretString="sk-from-secrets-manager")["ARN"]
    secrets.delete_secret(SecretId="AnthropicApiKeySecret", ForceDeleteWithoutRecovery=True)
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("OPENAI_API_KEY_ID", openai_arn)
    monkeypatch.setenv("ANTHROPIC_API_KEY_ID", "AnthropicApiKeySecret")
    monkeypatch.setenv("LOCAL_MODE", "false")
    get_settings.cache_clear()
    openai.openai_settings.cache_clear()
    anthropic.anthropic_settings.cache_clear()
    parameters.clear_caches()
    yield provider_env
    parameters.clear_caches()
    monkeypatch.undo()
    get_settings.cache_clear()
    openai.openai_settings.cache_clear()
    anthropic.anthropic_settings.cache_clear()


def test_provider_keys_come_from_secrets_manager(keys_in_secrets_manager: ModelServer) -> None:
    server = keys_in_secrets_manager
    server.reply(openai_completion(ChatCompletionMessage(role="assistant", content="Oui."), "stop"))

    # The operator's endpoint is on loopback and local mode is off: the operator policy allows it.
    assert complete("openai:gpt-x").text == "Oui."
    assert server.received[0].headers["authorization"] == "Bearer sk-from-secrets-manager"

    with pytest.raises(ConduitError) as error:
        complete("anthropic:claude-x")
    assert error.value.code == "MODEL_ERROR" and "key could not be read" in error.value.message
    assert len(server.received) == 1
