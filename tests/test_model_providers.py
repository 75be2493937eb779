"""The OpenAI, Anthropic and Bedrock model providers: wire formats, parsing, errors, deadlines.

No traffic leaves the machine: the HTTP providers talk to a server on
127.0.0.1 that records what it receives and answers real-format bodies;
Bedrock's client is driven by botocore's Stubber. Keys are fake.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from botocore.stub import Stubber

from conduit.platform import aws as aws_clients
from conduit.platform.errors import ConduitError
from conduit.models import Message, ModelTurn, ToolCall, ToolSpec, Usage, resolve_model
from conduit.models import anthropic, bedrock, openai, wire
from tests.conftest import ROOT
from tests.model_server import ModelServer, Reply

OPENAI_KEY = "sk-test-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-test-0123456789"

TOOLS = [
    ToolSpec(
        name="weather__forecast",
        description="Forecast for a city",
        input_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
]

PARIS = ToolCall(id="call_1", name="weather__forecast", arguments={"city": "Paris"})
ROME = ToolCall(id="call_2", name="weather__forecast", arguments={"city": "Rome"})
OSLO = ToolCall(id="call_3", name="weather__forecast", arguments={"city": "Oslo"})

# Two tool rounds: one with two calls and no text (results must be merged), a plain
# answer, then one call that comes with text.
HISTORY = [
    Message(role="user", content="Weather in Paris and Rome?"),
    Message(role="assistant", content="", tool_calls=(PARIS, ROME)),
    Message(role="tool", content='{"temp":21}', tool_call_id="call_1"),
    Message(role="tool", content='{"temp":25}', tool_call_id="call_2"),
    Message(role="assistant", content="Paris 21, Rome 25."),
    Message(role="user", content="And Oslo?"),
    Message(role="assistant", content="Checking Oslo.", tool_calls=(OSLO,)),
    Message(role="tool", content='["snow","wind"]', tool_call_id="call_3"),
]


USED = Usage(input_tokens=42, output_tokens=7)  # what every reply below reports


def in_time(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


# --- a loopback model server (tests/model_server.py) ----------------------------------------------


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    server = ModelServer.start()
    yield server
    server.stop()



def _clear_settings() -> None:
    openai.openai_settings.cache_clear()
    anthropic.anthropic_settings.cache_clear()


@pytest.fixture
def provider_env(monkeypatch: pytest.MonkeyPatch, model_server: ModelServer) -> Iterator[ModelServer]:
    """Both HTTP providers pointed at the loopback server, with fake keys."""
    monkeypatch.setenv("OPENAI_BASE_URL", f"{model_server.url}/v1/")  # a trailing slash is tolerated
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", model_server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setattr(wire, "_sleep", model_server.waits.append)  # retries are counted, not waited
    _clear_settings()
    yield model_server
    _clear_settings()


def _unused_loopback_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- real-format response bodies -----------------------------------------------------------------


def openai_reply(content: str | None, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1767225600,
        "model": "gpt-x",
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if tool_calls else "stop"}
        ],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
    }


def openai_tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def anthropic_reply(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": list(blocks),
        "stop_reason": "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 42, "output_tokens": 7},
    }


def anthropic_tool_use(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


# --- one description per HTTP provider, for the shared error and deadline tests ------------------


@dataclass(frozen=True)
class HttpCase:
    name: str
    module: ModuleType
    key_env: str
    key: str
    text_reply: Callable[[str], dict[str, Any]]
    no_choices: dict[str, Any]
    bad_arguments: dict[str, Any]

    def complete(self, deadline: float | None = None) -> ModelTurn:
        provider, model = resolve_model(f"{self.name}:model-x")
        return provider.complete(model, HISTORY, TOOLS, deadline=in_time() if deadline is None else deadline)


CASES = [
    HttpCase(
        name="openai",
        module=openai,
        key_env="OPENAI_API_KEY",
        key=OPENAI_KEY,
        text_reply=lambda text: openai_reply(text),
        no_choices={"id": "chatcmpl-abc123", "object": "chat.completion", "choices": []},
        bad_arguments=openai_reply(None, [openai_tool_call("call_9", "weather__forecast", '{"city": "Par')]),
    ),
    HttpCase(
        name="anthropic",
        module=anthropic,
        key_env="ANTHROPIC_API_KEY",
        key=ANTHROPIC_KEY,
        text_reply=lambda text: anthropic_reply({"type": "text", "text": text}),
        no_choices={"id": "msg_01abc", "type": "message", "role": "assistant"},
        bad_arguments=anthropic_reply(anthropic_tool_use("toolu_9", "weather__forecast", '{"city": "Paris"}')),
    ),
]


@pytest.fixture(params=CASES, ids=lambda case: case.name)
def case(request: pytest.FixtureRequest, provider_env: ModelServer) -> HttpCase:
    return request.param


def assert_model_error(error: pytest.ExceptionInfo[ConduitError], case: HttpCase, *fragments: str) -> None:
    assert error.value.code == "MODEL_ERROR"
    assert error.value.status == 502
    assert error.value.message.startswith(f"The {case.name} model failed: ")
    for fragment in fragments:
        assert fragment in error.value.message
    # Never the key, never the conversation.
    for secret in (case.key, "Paris", "Weather", "temp"):
        assert secret not in error.value.message


# --- OpenAI ----------------------------------------------------------------------------------------


OPENAI_WIRE_MESSAGES = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            openai_tool_call("call_1", "weather__forecast", '{"city":"Paris"}'),
            openai_tool_call("call_2", "weather__forecast", '{"city":"Rome"}'),
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp":21}'},
    {"role": "tool", "tool_call_id": "call_2", "content": '{"temp":25}'},
    {"role": "assistant", "content": "Paris 21, Rome 25."},
    {"role": "user", "content": "And Oslo?"},
    {
        "role": "assistant",
        "content": "Checking Oslo.",
        "tool_calls": [openai_tool_call("call_3", "weather__forecast", '{"city":"Oslo"}')],
    },
    {"role": "tool", "tool_call_id": "call_3", "content": '["snow","wind"]'},
]


def test_openai_sends_the_chat_completions_wire_format(provider_env: ModelServer) -> None:
    provider_env.reply(openai_reply("Oslo: snow and wind."))
    provider, model = resolve_model("openai:gpt-x")

    turn = provider.complete(model, HISTORY, TOOLS, deadline=in_time())

    assert turn == ModelTurn(text="Oslo: snow and wind.", usage=USED)
    [request] = provider_env.received
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "model": "gpt-x",
        "messages": OPENAI_WIRE_MESSAGES,
        "max_completion_tokens": 4096,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather__forecast",
                    "description": "Forecast for a city",
                    "parameters": TOOLS[0].input_schema,
                },
            }
        ],
    }


def test_openai_omits_tools_when_there_are_none(provider_env: ModelServer) -> None:
    provider_env.reply(openai_reply("hi"))
    provider, model = resolve_model("openai:gpt-x")

    provider.complete(model, [Message(role="user", content="hello")], [], deadline=in_time())

    assert provider_env.received[0].body == {
        "model": "gpt-x", "messages": [{"role": "user", "content": "hello"}], "max_completion_tokens": 4096
    }


def test_openai_parses_tool_calls_with_json_string_arguments(provider_env: ModelServer) -> None:
    provider_env.reply(
        openai_reply(
            None,
            [
                openai_tool_call("call_a", "weather__forecast", '{"city": "Paris"}'),
                openai_tool_call("call_b", "weather__forecast", '{"city": "Rome", "days": [1, 2]}'),
            ],
        )
    )
    provider, model = resolve_model("openai:gpt-x")

    turn = provider.complete(model, HISTORY[:1], TOOLS, deadline=in_time())

    assert turn == ModelTurn(
        text="",
        tool_calls=(
            ToolCall("call_a", "weather__forecast", {"city": "Paris"}),
            ToolCall("call_b", "weather__forecast", {"city": "Rome", "days": [1, 2]}),
        ),
        usage=USED,
    )


def test_openai_keeps_text_that_comes_with_tool_calls(provider_env: ModelServer) -> None:
    provider_env.reply(openai_reply("Let me check.", [openai_tool_call("call_a", "weather__forecast", "{}")]))
    provider, model = resolve_model("openai:gpt-x")

    turn = provider.complete(model, HISTORY[:1], TOOLS, deadline=in_time())

    assert turn == ModelTurn(
        text="Let me check.", tool_calls=(ToolCall("call_a", "weather__forecast", {}),), usage=USED
    )


@pytest.mark.parametrize(
    "arguments, detail",
    [('{"city": "Par', "not valid JSON"), ('["Paris"]', "not a JSON object"), ("", "not valid JSON")],
)
def test_openai_tool_arguments_must_be_a_json_object(provider_env: ModelServer, arguments: str, detail: str) -> None:
    provider_env.reply(openai_reply(None, [openai_tool_call("call_a", "weather__forecast", arguments)]))
    provider, model = resolve_model("openai:gpt-x")

    with pytest.raises(ConduitError) as error:
        provider.complete(model, HISTORY[:1], TOOLS, deadline=in_time())

    assert_model_error(error, CASES[0], detail)


# --- Anthropic -----------------------------------------------------------------------------------


def _tool_result(call_id: str, content: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content}


ANTHROPIC_WIRE_MESSAGES = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": [  # no empty text block: the API rejects those
            anthropic_tool_use("call_1", "weather__forecast", {"city": "Paris"}),
            anthropic_tool_use("call_2", "weather__forecast", {"city": "Rome"}),
        ],
    },
    # Both results in ONE user message.
    {"role": "user", "content": [_tool_result("call_1", '{"temp":21}'), _tool_result("call_2", '{"temp":25}')]},
    {"role": "assistant", "content": [{"type": "text", "text": "Paris 21, Rome 25."}]},
    {"role": "user", "content": "And Oslo?"},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking Oslo."},
            anthropic_tool_use("call_3", "weather__forecast", {"city": "Oslo"}),
        ],
    },
    {"role": "user", "content": [_tool_result("call_3", '["snow","wind"]')]},
]


def test_anthropic_sends_the_messages_wire_format(provider_env: ModelServer) -> None:
    provider_env.reply(anthropic_reply({"type": "text", "text": "Oslo: snow and wind."}))
    provider, model = resolve_model("anthropic:claude-x")

    turn = provider.complete(model, HISTORY, TOOLS, deadline=in_time())

    assert turn == ModelTurn(text="Oslo: snow and wind.", usage=USED)
    [request] = provider_env.received
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == ANTHROPIC_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert request.body == {
        "model": "claude-x",
        "max_tokens": 4096,
        "messages": ANTHROPIC_WIRE_MESSAGES,
        "tools": [
            {"name": "weather__forecast", "description": "Forecast for a city", "input_schema": TOOLS[0].input_schema}
        ],
    }


def test_anthropic_omits_tools_when_there_are_none(provider_env: ModelServer) -> None:
    provider_env.reply(anthropic_reply({"type": "text", "text": "hi"}))
    provider, model = resolve_model("anthropic:claude-x")

    provider.complete(model, [Message(role="user", content="hello")], [], deadline=in_time())

    assert "tools" not in provider_env.received[0].body


def test_anthropic_parses_text_and_tool_use_blocks(provider_env: ModelServer) -> None:
    provider_env.reply(
        anthropic_reply(
            {"type": "thinking", "thinking": "the user wants weather", "signature": "sig"},
            {"type": "text", "text": "Let me "},
            {"type": "text", "text": "check."},
            anthropic_tool_use("toolu_01", "weather__forecast", {"city": "Paris"}),
            anthropic_tool_use("toolu_02", "weather__forecast", {"city": "Rome"}),
        )
    )
    provider, model = resolve_model("anthropic:claude-x")

    turn = provider.complete(model, HISTORY[:1], TOOLS, deadline=in_time())

    assert turn == ModelTurn(
        text="Let me check.",
        tool_calls=(
            ToolCall("toolu_01", "weather__forecast", {"city": "Paris"}),
            ToolCall("toolu_02", "weather__forecast", {"city": "Rome"}),
        ),
        usage=USED,
    )


# --- errors and deadlines, both HTTP providers ---------------------------------------------------


@pytest.fixture
def case_server(case: HttpCase, provider_env: ModelServer) -> ModelServer:
    return provider_env


def test_a_text_answer_round_trips(case: HttpCase, case_server: ModelServer) -> None:
    case_server.reply(case.text_reply("Sunny."))

    assert case.complete() == ModelTurn(text="Sunny.", usage=USED)
    assert case_server.received[0].body["model"] == "model-x"


@pytest.mark.parametrize(
    "status, error_type", [(500, "api_error"), (429, "rate_limit_error"), (529, "overloaded_error")]
)
def test_error_statuses_are_model_errors_without_the_provider_text(
    case: HttpCase, case_server: ModelServer, status: int, error_type: str
) -> None:
    # Error texts can quote the request; only the status and the error type are passed on.
    # These statuses are retried twice (backing off), so the provider answers three times.
    echoed = f"key {case.key} rejected for prompt 'Weather in Paris'"
    for _ in range(3):
        case_server.reply({"type": "error", "error": {"type": error_type, "message": echoed}}, status=status)

    with pytest.raises(ConduitError) as error:
        case.complete()

    assert_model_error(error, case, f"HTTP {status} ({error_type})")
    assert len(case_server.received) == 3
    assert case_server.waits == [0.5, 1.0]


def test_an_error_type_that_is_not_an_identifier_is_left_out(case: HttpCase, case_server: ModelServer) -> None:
    case_server.reply({"error": {"type": "Weather in Paris was refused", "message": "no"}}, status=400)

    with pytest.raises(ConduitError) as error:
        case.complete()

    assert error.value.message == f"The {case.name} model failed: HTTP 400"


@pytest.mark.parametrize(
    "body", [b"<html>Bad gateway</html>", b"\xff\xfe not utf-8", b""], ids=["html", "binary", "empty"]
)
def test_a_body_that_is_not_json_is_a_model_error(case: HttpCase, case_server: ModelServer, body: bytes) -> None:
    case_server.reply(body)

    with pytest.raises(ConduitError) as error:
        case.complete()

    assert_model_error(error, case, "not JSON")


@pytest.mark.parametrize("shape", ["no_choices", "list", "string"])
def test_json_of_the_wrong_shape_is_a_model_error(case: HttpCase, case_server: ModelServer, shape: str) -> None:
    case_server.reply({"no_choices": case.no_choices, "list": [1, 2], "string": "ok"}[shape])

    with pytest.raises(ConduitError) as error:
        case.complete()

    assert_model_error(error, case)


def test_invalid_tool_arguments_are_a_model_error(case: HttpCase, case_server: ModelServer) -> None:
    case_server.reply(case.bad_arguments)

    with pytest.raises(ConduitError) as error:
        case.complete()

    assert_model_error(error, case, "arguments")


def test_a_missing_key_is_a_model_error_without_a_request(
    case: HttpCase, case_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(case.key_env)
    _clear_settings()

    with pytest.raises(ConduitError) as error:
        case.complete()

    assert error.value.code == "MODEL_ERROR"
    assert error.value.message == f"The {case.name} model failed: {case.key_env} is not set"
    assert case_server.received == []


def test_an_unreachable_endpoint_is_a_model_error(case: HttpCase, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{case.name.upper()}_BASE_URL", _unused_loopback_url())
    _clear_settings()

    with pytest.raises(ConduitError) as error:
        case.complete()

    assert_model_error(error, case, "could not be reached")


def test_a_redirect_is_not_followed_with_the_key(case: HttpCase, case_server: ModelServer) -> None:
    case_server.replies.append(Reply(307, b""))  # a Location-less 3xx is just a non-2xx status

    with pytest.raises(ConduitError) as error:
        case.complete()

    assert_model_error(error, case, "HTTP 307")


def test_a_passed_deadline_is_a_chat_timeout_without_a_request(case: HttpCase, case_server: ModelServer) -> None:
    with pytest.raises(ConduitError) as error:
        case.complete(deadline=time.monotonic() - 1)

    assert error.value.code == "CHAT_TIMEOUT"
    assert case_server.received == []


def test_a_server_slower_than_the_deadline_is_a_chat_timeout(case: HttpCase, case_server: ModelServer) -> None:
    case_server.reply(case.text_reply("too late"), delay=10)
    started = time.monotonic()

    with pytest.raises(ConduitError) as error:
        case.complete(deadline=started + 0.5)

    assert error.value.code == "CHAT_TIMEOUT"
    assert error.value.status == 504
    assert time.monotonic() - started < 3  # the request was cut at the deadline, not at the server's pace


# --- Bedrock -------------------------------------------------------------------------------------


@pytest.fixture
def bedrock_stub() -> Iterator[Stubber]:
    with Stubber(aws_clients.bedrock_runtime_client()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def converse_response(*content: dict[str, Any], stop_reason: str = "end_turn") -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": list(content)}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 42, "outputTokens": 7, "totalTokens": 49},
        "metrics": {"latencyMs": 120},
    }


def _tool_use(call: ToolCall) -> dict[str, Any]:
    return {"toolUse": {"toolUseId": call.id, "name": call.name, "input": call.arguments}}


BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"

BEDROCK_PARAMS = {
    "modelId": BEDROCK_MODEL,
    "inferenceConfig": {"maxTokens": 4096},
    "messages": [
        {"role": "user", "content": [{"text": "Weather in Paris and Rome?"}]},
        {"role": "assistant", "content": [_tool_use(PARIS), _tool_use(ROME)]},
        # Both results in ONE user message; JSON objects travel as documents.
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "call_1", "content": [{"json": {"temp": 21}}]}},
                {"toolResult": {"toolUseId": "call_2", "content": [{"json": {"temp": 25}}]}},
            ],
        },
        {"role": "assistant", "content": [{"text": "Paris 21, Rome 25."}]},
        {"role": "user", "content": [{"text": "And Oslo?"}]},
        {"role": "assistant", "content": [{"text": "Checking Oslo."}, _tool_use(OSLO)]},
        # Anything but a JSON object travels as text.
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "call_3", "content": [{"text": '["snow","wind"]'}]}}],
        },
    ],
    "toolConfig": {
        "tools": [
            {
                "toolSpec": {
                    "name": "weather__forecast",
                    "description": "Forecast for a city",
                    "inputSchema": {"json": TOOLS[0].input_schema},
                }
            }
        ]
    },
}


def test_bedrock_sends_converse_params_and_reads_text(bedrock_stub: Stubber) -> None:
    bedrock_stub.add_response("converse", converse_response({"text": "Oslo: "}, {"text": "snow."}), BEDROCK_PARAMS)
    provider, model = resolve_model(f"bedrock:{BEDROCK_MODEL}")

    turn = provider.complete(model, HISTORY, TOOLS, deadline=in_time())
    assert turn == ModelTurn(text="Oslo: snow.", usage=USED)


def test_bedrock_omits_tool_config_when_there_are_no_tools(bedrock_stub: Stubber) -> None:
    expected = {
        "modelId": BEDROCK_MODEL,
        "messages": [{"role": "user", "content": [{"text": "hello"}]}],
        "inferenceConfig": {"maxTokens": 4096},
    }
    bedrock_stub.add_response("converse", converse_response({"text": "hi"}), expected)
    provider, model = resolve_model(f"bedrock:{BEDROCK_MODEL}")

    assert provider.complete(model, [Message(role="user", content="hello")], [], deadline=in_time()).text == "hi"


def test_bedrock_reads_tool_use_blocks(bedrock_stub: Stubber) -> None:
    calls = (
        ToolCall("tooluse_a", "weather__forecast", {"city": "Paris"}),
        ToolCall("tooluse_b", "weather__forecast", {}),
    )
    bedrock_stub.add_response(
        "converse",
        converse_response({"text": "Checking."}, *(_tool_use(call) for call in calls), stop_reason="tool_use"),
    )
    provider, model = resolve_model(f"bedrock:{BEDROCK_MODEL}")

    turn = provider.complete(model, HISTORY[:1], TOOLS, deadline=in_time())
    assert turn == ModelTurn("Checking.", calls, usage=USED)


@pytest.mark.parametrize(
    "code, status", [("ValidationException", 400), ("AccessDeniedException", 403), ("ModelErrorException", 424)]
)
def test_bedrock_client_errors_are_model_errors_with_only_the_code(
    bedrock_stub: Stubber, code: str, status: int
) -> None:
    bedrock_stub.add_client_error(
        "converse",
        service_error_code=code,
        service_message="Input 'Weather in Paris' is too long",  # may quote the prompt: never passed on
        http_status_code=status,
    )
    provider, model = resolve_model(f"bedrock:{BEDROCK_MODEL}")

    with pytest.raises(ConduitError) as error:
        provider.complete(model, HISTORY, TOOLS, deadline=in_time())

    assert error.value.code == "MODEL_ERROR"
    assert error.value.message == f"The bedrock model failed: {code}"


def test_bedrock_throttles_and_5xx_are_retried_twice_within_the_deadline(
    bedrock_stub: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(wire, "_sleep", waits.append)  # counted, not waited
    provider, model = resolve_model(f"bedrock:{BEDROCK_MODEL}")

    def fail(code: str, status: int) -> None:
        bedrock_stub.add_client_error("converse", service_error_code=code, service_message="busy", http_status_code=status)

    fail("ThrottlingException", 429)
    fail("ServiceUnavailableException", 503)
    bedrock_stub.add_response("converse", converse_response({"text": "Oui."}))
    assert provider.complete(model, HISTORY[:1], [], deadline=in_time()).text == "Oui."
    assert waits == [0.5, 1.0]

    for _ in range(3):  # the third failure is the last
        fail("ThrottlingException", 429)
    with pytest.raises(ConduitError) as error:
        provider.complete(model, HISTORY[:1], [], deadline=in_time())
    assert error.value.message == "The bedrock model failed: ThrottlingException"
    assert waits == [0.5, 1.0, 0.5, 1.0]

    fail("ThrottlingException", 429)  # a backoff that would end past the deadline is not waited
    with pytest.raises(ConduitError) as error:
        provider.complete(model, HISTORY[:1], [], deadline=in_time(0.3))
    assert error.value.message == "The bedrock model failed: ThrottlingException"
    assert waits == [0.5, 1.0, 0.5, 1.0]


def test_bedrock_checks_the_deadline_before_calling(bedrock_stub: Stubber) -> None:
    provider, model = resolve_model(f"bedrock:{BEDROCK_MODEL}")

    with pytest.raises(ConduitError) as error:
        provider.complete(model, HISTORY, TOOLS, deadline=time.monotonic() - 1)

    assert error.value.code == "CHAT_TIMEOUT"  # and the stub saw no call


def test_bedrock_checks_the_deadline_after_the_call(bedrock_stub: Stubber) -> None:
    # A reply that arrives after the deadline is a timeout: the chat has already run out of time.
    deadline = in_time(0.2)
    bedrock_stub.add_response("converse", converse_response({"text": "late"}))
    events, event = aws_clients.bedrock_runtime_client().meta.events, "before-parameter-build.bedrock-runtime.Converse"

    def slow_call(**_: Any) -> None:
        time.sleep(0.3)

    events.register(event, slow_call)
    provider, model = resolve_model(f"bedrock:{BEDROCK_MODEL}")
    try:
        with pytest.raises(ConduitError) as error:
            provider.complete(model, HISTORY[:1], [], deadline=deadline)
    finally:
        events.unregister(event, slow_call)

    assert error.value.code == "CHAT_TIMEOUT"


def test_blank_assistant_text_is_not_sent_as_a_block() -> None:
    # Both APIs reject blank text blocks; a blank turn without calls is dropped altogether.
    history = [Message(role="assistant", content=" \n", tool_calls=(PARIS,)), Message(role="assistant", content="")]

    assert anthropic.to_anthropic_messages(history) == [
        {"role": "assistant", "content": [anthropic_tool_use("call_1", "weather__forecast", {"city": "Paris"})]}
    ]
    assert bedrock.to_bedrock_messages(history) == [{"role": "assistant", "content": [_tool_use(PARIS)]}]


# --- resolving and import weight -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, model_class, model_id",
    [
        ("openai:gpt-x", openai.OpenAIModel, "gpt-x"),
        ("anthropic:claude-x", anthropic.AnthropicModel, "claude-x"),
        (f"bedrock:{BEDROCK_MODEL}", bedrock.BedrockModel, BEDROCK_MODEL),  # model ids may contain ":"
    ],
)
def test_resolve_model_returns_the_provider_and_the_model_id(name: str, model_class: type, model_id: str) -> None:
    provider, resolved_id = resolve_model(name)

    assert isinstance(provider, model_class)
    assert resolved_id == model_id


def test_the_http_providers_do_not_load_boto3() -> None:
    code = (
        "import sys, conduit.models.openai, conduit.models.anthropic, conduit.models.bedrock;"
        "loaded = sorted(m for m in ('boto3', 'botocore') if m in sys.modules);"
        "assert not loaded, loaded"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "conduit")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


# ==================================================================================================
# Bonus: streamed responses, parsed from recorded wire text (`complete` itself does not stream).
# ==================================================================================================


def _sse(*chunks: Any) -> str:
    return "".join(f"data: {chunk if isinstance(chunk, str) else json.dumps(chunk)}\n\n" for chunk in chunks)


def _openai_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def _openai_fragment(index: int, arguments: str, call_id: str | None = None) -> dict[str, Any]:
    fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:  # only the first fragment of a call names it
        fragment.update(id=call_id, type="function")
        fragment["function"]["name"] = "weather__forecast"
    return {"tool_calls": [fragment]}


OPENAI_STREAM = _sse(
    _openai_chunk({"role": "assistant", "content": "", "refusal": None}),
    _openai_chunk({"content": "Let me "}),
    _openai_chunk({"content": "check."}),
    _openai_chunk(_openai_fragment(0, "", "call_a")),
    _openai_chunk(_openai_fragment(0, '{"city": ')),
    _openai_chunk(_openai_fragment(1, '{"ci', "call_b")),  # calls interleave: joined by index
    _openai_chunk(_openai_fragment(0, '"Paris"}')),
    _openai_chunk(_openai_fragment(1, 'ty": "Rome"}')),
    _openai_chunk({}, finish_reason="tool_calls"),
    "[DONE]",
)


@pytest.mark.parametrize(
    "split", [str.splitlines, lambda text: io.StringIO(text.replace("\n", "\r\n"))], ids=["lines", "crlf-file"]
)
def test_openai_stream_assembles_text_and_tool_calls(split: Callable[[str], Any]) -> None:
    turn = openai.parse_openai_stream(split(OPENAI_STREAM))

    assert turn == ModelTurn(
        text="Let me check.",
        tool_calls=(
            ToolCall("call_a", "weather__forecast", {"city": "Paris"}),
            ToolCall("call_b", "weather__forecast", {"city": "Rome"}),
        ),
    )


def test_openai_stream_of_text_only() -> None:
    wire = ": keep-alive comment\n\n" + _sse(_openai_chunk({"content": "Hi"}), _openai_chunk({}, "stop"), "[DONE]")

    assert openai.parse_openai_stream(wire.splitlines()) == ModelTurn(text="Hi")


@pytest.mark.parametrize(
    "wire, detail",
    [
        (_sse(_openai_chunk({"content": "Hi"})), "ended early"),
        (_sse(_openai_chunk(_openai_fragment(0, '{"city": ', "call_a")), "[DONE]"), "not valid JSON"),
        (_sse({"error": {"message": "Weather in Paris overloaded", "type": "server_error"}}), "reported an error"),
        (_sse("{not json"), "not valid JSON"),
    ],
    ids=["truncated", "bad-arguments", "error-chunk", "bad-chunk"],
)
def test_openai_stream_failures_are_model_errors(wire: str, detail: str) -> None:
    with pytest.raises(ConduitError) as error:
        openai.parse_openai_stream(wire.splitlines())

    assert_model_error(error, CASES[0], detail)


def _event(kind: str, **data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"


def _text_delta(index: int, text: str) -> str:
    return _event("content_block_delta", index=index, delta={"type": "text_delta", "text": text})


def _json_delta(index: int, partial: str) -> str:
    return _event("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": partial})


def _tool_start(index: int, call_id: str) -> str:
    block = {"type": "tool_use", "id": call_id, "name": "weather__forecast", "input": {}}
    return _event("content_block_start", index=index, content_block=block)


_MESSAGE_START = _event(
    "message_start",
    message={
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-x",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 42, "output_tokens": 1},
    },
)
_MESSAGE_END = _event(
    "message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage={"output_tokens": 30}
) + _event("message_stop")
_TEXT_START = _event("content_block_start", index=0, content_block={"type": "text", "text": ""})

ANTHROPIC_STREAM = "".join(
    [
        _MESSAGE_START,
        _TEXT_START,
        _event("ping"),
        _text_delta(0, "Let me "),
        _text_delta(0, "check."),
        _event("content_block_stop", index=0),
        _tool_start(1, "toolu_a"),
        _json_delta(1, ""),
        _json_delta(1, '{"city": '),
        _json_delta(1, '"Paris"}'),
        _event("content_block_stop", index=1),
        _tool_start(2, "toolu_b"),  # a call without arguments: no JSON deltas, the start's {} stands
        _json_delta(2, ""),
        _event("content_block_stop", index=2),
        _MESSAGE_END,
    ]
)


def test_anthropic_stream_assembles_text_and_tool_use() -> None:
    turn = anthropic.parse_anthropic_stream(ANTHROPIC_STREAM.splitlines())

    assert turn == ModelTurn(
        text="Let me check.",
        tool_calls=(
            ToolCall("toolu_a", "weather__forecast", {"city": "Paris"}),
            ToolCall("toolu_b", "weather__forecast", {}),
        ),
        usage=Usage(input_tokens=42, output_tokens=30),  # message_start's input, message_delta's output
    )


@pytest.mark.parametrize(
    "wire, detail",
    [
        (_MESSAGE_START + _TEXT_START + _text_delta(0, "Hi"), "ended early"),
        (
            _MESSAGE_START + _tool_start(0, "toolu_a") + _json_delta(0, '{"city": ')
            + _event("content_block_stop", index=0) + _MESSAGE_END,
            "not valid JSON",
        ),
        (
            _MESSAGE_START + _event("error", error={"type": "overloaded_error", "message": "Weather in Paris"}),
            "reported an error",
        ),
        (_MESSAGE_START + _text_delta(3, "orphan"), "no open content block"),
    ],
    ids=["truncated", "bad-arguments", "error-event", "orphan-delta"],
)
def test_anthropic_stream_failures_are_model_errors(wire: str, detail: str) -> None:
    with pytest.raises(ConduitError) as error:
        anthropic.parse_anthropic_stream(wire.splitlines())

    assert_model_error(error, CASES[1], detail)
