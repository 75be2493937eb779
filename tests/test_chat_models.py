"""Chat with real-format model providers through the local stack (API.md §14): streaming deltas,
system prompts, finish reasons, usage. The providers are the loopback server of
tests/model_server.py, which conftest points OPENAI_BASE_URL and ANTHROPIC_BASE_URL at; each test
queues answers for a model id of its own, so tests never share answers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
from openai.types.chat import ChatCompletionMessage
from openai.types.chat.chat_completion_chunk import ChoiceDelta

from tests.conftest import MODEL_KEYS
from tests.model_server import ModelServer, Reply
from tests.test_chat import messages, new_session, send, sse_events, user  # noqa: F401  (user is a fixture)
from anthropic.types import TextBlock, ToolUseBlock

from tests.test_agents import create_agent, start, wait_for_run
from tests.test_model_layer import (
    OPENAI_END,
    anthropic_events,
    anthropic_message,
    openai_chunk,
    openai_completion,
    openai_fragment,
    openai_text,
)

pytestmark = pytest.mark.stack

PROMPT = "Tu es un assistant météo. Réponds en français."


def model_id() -> str:
    return f"model-{uuid.uuid4().hex[:12]}"


def requests_for(server: ModelServer, model: str) -> list:
    return [request for request in server.received if request.body.get("model") == model]


def test_a_streamed_chat_sends_each_delta_while_the_model_writes(client, user, fake_models):  # noqa: F811
    model = model_id()
    resume = threading.Event()
    fake_models.for_model(
        model,
        Reply(stream=[openai_chunk(ChoiceDelta(role="assistant", content="")), openai_text("Il fait"), resume,
                      openai_text(" beau"), openai_text(" à Paris."), *OPENAI_END]),
    )
    token = new_session(client, user, model=f"openai:{model}", systemPrompt=PROMPT)
    body = {"sessionToken": token, "message": "Quel temps à Paris ?", "stream": True}

    with client.stream("POST", "/chat", json=body, headers=user["headers"]) as response:
        assert response.status_code == 200
        events = sse_events(response.iter_lines())
        first = next(events)
        # The first words are here while the provider still holds back the rest of its answer.
        assert first == ("text", {"text": "Il fait"})
        assert not resume.is_set()
        resume.set()
        rest = list(events)

    assert rest[:2] == [("text", {"text": " beau"}), ("text", {"text": " à Paris."})]
    assert [name for name, _ in rest] == ["text", "text", "done"]
    done = rest[-1][1]
    assert done["message"] == {"role": "assistant", "content": "Il fait beau à Paris.", "finishReason": "stop"}
    assert done["usage"] == {"inputTokens": 42, "outputTokens": 7}
    # The session's prompt went as the system message; the key to the operator's endpoint.
    [request] = requests_for(fake_models, model)
    assert request.body["messages"][:2] == [
        {"role": "system", "content": PROMPT},
        {"role": "user", "content": "Quel temps à Paris ?"},
    ]
    assert request.body["stream"] is True
    assert request.headers["authorization"] == f"Bearer {MODEL_KEYS['OPENAI_API_KEY']}"
    session = client.get(f"/sessions/{token}", headers=user["headers"]).json()
    assert session["systemPrompt"] == PROMPT
    assert session["messages"][-1] == done["message"]


def test_usage_is_summed_over_the_model_turns_of_an_exchange(client, user, fake_models):  # noqa: F811
    model = model_id()
    fake_models.for_model(
        model,
        Reply(stream=[openai_fragment(0, '{"q": "x"}', "call_1"), openai_chunk(ChoiceDelta(), "tool_calls"),
                      openai_chunk(usage=True), "data: [DONE]\n\n"]),
        Reply(stream=[openai_text("Rien trouvé."), *OPENAI_END]),
    )
    token = new_session(client, user, model=f"openai:{model}")

    response = send(client, user, token, "Cherche x", stream=True)

    events = list(sse_events(response.text.splitlines()))
    assert [name for name, _ in events] == ["tool_use", "tool_result", "text", "done"]
    done = events[-1][1]
    assert done["usage"] == {"inputTokens": 84, "outputTokens": 14}
    assert done["message"]["finishReason"] == "stop"
    # The second turn declared the (invented) tool its history calls, and saw the result.
    second = requests_for(fake_models, model)[1].body
    assert [tool["function"]["name"] for tool in second["tools"]] == ["weather__forecast"]
    assert second["messages"][-1]["role"] == "tool"


def test_a_cut_off_tool_call_is_never_run_and_saves_nothing(client, user, fake_models):  # noqa: F811
    model = model_id()
    fake_models.for_model(
        model, Reply(stream=[openai_fragment(0, '{"city": "Pa', "call_1"), openai_chunk(ChoiceDelta(), "length")])
    )
    token = new_session(client, user, model=f"openai:{model}")

    response = send(client, user, token, "Météo ?", stream=True)

    events = list(sse_events(response.text.splitlines()))
    assert [name for name, _ in events] == ["error"]
    assert events[0][1]["code"] == "MODEL_ERROR" and "cut off inside a tool call" in events[0][1]["error"]
    assert response.status_code == 502  # nothing had been streamed, so the error's status is the response's
    assert messages(client, user, token) == []


def test_answers_say_why_they_ended(client, user, fake_models):  # noqa: F811
    length, refusal = model_id(), model_id()
    fake_models.for_model(
        length, Reply(body=openai_completion(ChatCompletionMessage(role="assistant", content="Il fait be"), "length"))
    )
    fake_models.for_model(refusal, Reply(stream=anthropic_events(text=["Je ne peux pas aider."], stop_reason="refusal")))

    cut = send(client, user, new_session(client, user, model=f"openai:{length}"), "Météo ?")
    refused = send(client, user, new_session(client, user, model=f"anthropic:{refusal}"), "…", stream=True)

    assert cut.json()["message"] == {"role": "assistant", "content": "Il fait be", "finishReason": "length"}
    done = list(sse_events(refused.text.splitlines()))[-1][1]
    assert done["message"] == {"role": "assistant", "content": "Je ne peux pas aider.", "finishReason": "refusal"}
    assert done["usage"] == {"inputTokens": 42, "outputTokens": 30}


def test_an_exchange_that_runs_out_of_rounds_says_max_rounds(client, user):  # noqa: F811
    token = new_session(client, user)
    calls = "\n".join(f'call nowhere_tool{n} {{}}' for n in range(5))  # local:echo: one call per turn

    response = send(client, user, token, calls)

    assert response.status_code == 200, response.text
    assert response.json()["message"]["finishReason"] == "max_rounds"
    assert len(response.json()["toolCalls"]) == 5


def test_a_run_sends_its_prompt_as_the_system_prompt_and_sums_its_usage(client, user, fake_models):  # noqa: F811
    model = model_id()
    call = ToolUseBlock(type="tool_use", id="toolu_1", name="nowhere_tool", input={"a": 1})
    fake_models.for_model(
        model,
        Reply(body=anthropic_message(call, stop_reason="tool_use")),
        Reply(body=anthropic_message(TextBlock(type="text", text="Fini."), stop_reason="end_turn")),
    )
    agent = create_agent(client, user, model=f"anthropic:{model}", systemPrompt=PROMPT)

    run = wait_for_run(client, user, start(client, user, agent["id"], input={"ville": "Paris"}).json()["id"])

    assert run["status"] == "succeeded" and run["output"] == "Fini.", run
    assert [step["type"] for step in run["steps"]] == ["model", "tool", "model"]
    assert [step.get("finishReason") for step in run["steps"]] == ["stop", None, "stop"]
    assert run["usage"] == {"inputTokens": 84, "outputTokens": 14}  # each turn: 42 in, 7 out
    first, second = (request.body for request in requests_for(fake_models, model))
    assert first["system"] == PROMPT and second["system"] == PROMPT
    assert first["messages"] == [{"role": "user", "content": '{"ville":"Paris"}'}]
    # The history holds a tool call: the tool stays declared though no site offers it.
    assert [tool["name"] for tool in second["tools"]] == ["nowhere_tool"]
    listed = client.get(f"/agents/{agent['id']}/runs", headers=user["headers"]).json()["items"]
    assert listed[0]["usage"] == run["usage"]  # settled into the run when it ended


def test_a_system_prompt_is_bounded_and_its_call_lines_drive_local_echo(client, user):  # noqa: F811
    too_long = client.post("/sessions", json={"systemPrompt": "x" * 32_001}, headers=user["headers"])
    assert too_long.status_code == 400 and too_long.json()["code"] == "VALIDATION_ERROR"
    token = new_session(client, user, systemPrompt='call nowhere_tool {"a": 1}')

    response = send(client, user, token, "go")

    assert response.json()["toolCalls"][0]["tool"] == "nowhere_tool"
    assert json.loads(json.dumps(response.json()["toolCalls"][0]["arguments"])) == {"a": 1}


def test_deltas_stream_through_the_lambda_web_adapter_server(client, user, local_stack, fake_models):  # noqa: F811
    """On AWS the chat URL is conduit/http/stream_server.py behind the Lambda Web Adapter: run it as run.sh
    does, with ChatStreamFunction's environment, and speak the adapter's side of it."""
    pool = next(pool for pool in local_stack.pools if pool.spec.logical_id == "ChatStreamFunction")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    paths = [str(pool.spec.code_dir), *(str(path) for path in pool.spec.layer_dirs)]
    environment = {**os.environ, **pool.environment, "AWS_LWA_PORT": str(port), "PYTHONPATH": os.pathsep.join(paths)}
    server = subprocess.Popen(
        [sys.executable, "-m", "conduit.http.stream_server", "app.lambda_handler"], env=environment, cwd=pool.spec.code_dir
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):  # the adapter's readiness check: GET / until it answers
            try:
                if httpx.get(url + "/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        model, resume = model_id(), threading.Event()
        fake_models.for_model(model, Reply(stream=[openai_text("Il fait"), resume, openai_text(" beau."), *OPENAI_END]))
        token = new_session(client, user, model=f"openai:{model}")
        context = {  # a Function URL's request context, as the adapter forwards it
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc123",
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "t"},
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "03/Dec/2026:06:30:00 +0000",
            "timeEpoch": 1796279400000,
        }
        headers = {
            **user["headers"],
            "x-amzn-request-context": json.dumps(context),
            "x-amzn-lambda-context": json.dumps({"request_id": "inv-1", "deadline": 0, "env_config": {}}),
        }
        body = {"sessionToken": token, "message": "Météo ?", "stream": True}
        with httpx.stream("POST", url + "/", json=body, headers=headers, timeout=30) as response:
            assert response.status_code == 200 and response.headers["transfer-encoding"] == "chunked"
            events = sse_events(response.iter_lines())
            assert next(events) == ("text", {"text": "Il fait"})
            assert not resume.is_set()  # the provider is still holding back the rest
            resume.set()
            rest = list(events)
        assert [name for name, _ in rest] == ["text", "done"]
        assert rest[-1][1]["message"]["content"] == "Il fait beau."
    finally:
        server.terminate()
        server.wait(timeout=10)
