"""Sessions and chat through the local stack, with real sites on loopback (API.md §7)."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .helpers import assert_error, bearer, register, wait_for_room_in_the_minute
from .sites import TestSite, rest_manifest, tool

pytestmark = pytest.mark.stack


def echo_tool(site, path, headers, body):
    return 200, {"received": json.loads(body), "authorization": headers.get("authorization")}


@pytest.fixture
def user(client):
    session = register(client)
    headers = bearer(session["accessToken"])
    client.post("/auth/accept-terms", json={}, headers=headers)
    return {"headers": headers, "account": session["user"]["id"]}


@pytest.fixture
def site():
    schema_tool = tool("search", q={"type": "string", "minLength": 1})
    test_site = TestSite(manifest=lambda s: rest_manifest(s, tools=[schema_tool]), routes={("POST", "/tools/search"): echo_tool})
    yield test_site
    test_site.close()


def connect(client, user, test_site, token="site-token"):
    response = client.post("/vault/sites", json={"url": test_site.origin, "token": token}, headers=user["headers"])
    assert response.status_code == 201, response.text
    return response.json()


def new_session(client, user, **body):
    response = client.post("/sessions", json=body, headers=user["headers"])
    assert response.status_code == 201, response.text
    return response.json()["sessionToken"]


def send(client, user, token, message, **extra):
    return client.post("/chat", json={"sessionToken": token, "message": message, **extra}, headers=user["headers"])


def messages(client, user, token):
    return client.get(f"/sessions/{token}", headers=user["headers"]).json()["messages"]


def test_session_lifecycle(client, user):
    created = client.post("/sessions", json={"title": "Plans", "ttlSeconds": 3600}, headers=user["headers"])
    assert created.status_code == 201
    body = created.json()
    assert body["sessionToken"].startswith("sess_") and len(body["sessionToken"]) >= 37
    assert (body["title"], body["model"]) == ("Plans", "local:echo")
    listed = client.get("/sessions", headers=user["headers"]).json()
    assert [item["sessionToken"] for item in listed["items"]] == [body["sessionToken"]]
    fetched = client.get(f"/sessions/{body['sessionToken']}", headers=user["headers"]).json()
    assert fetched["messages"] == [] and fetched["expiresAt"] == body["expiresAt"]
    assert client.delete(f"/sessions/{body['sessionToken']}", headers=user["headers"]).status_code == 204
    assert_error(client.get(f"/sessions/{body['sessionToken']}", headers=user["headers"]), 404, "SESSION_NOT_FOUND")


def test_session_token_errors(client, user):
    assert_error(client.get("/sessions/not-a-token", headers=user["headers"]), 400, "INVALID_SESSION")
    assert_error(send(client, user, "sess_short", "hi"), 400, "INVALID_SESSION")
    unknown = "sess_" + "a" * 43
    assert_error(client.get(f"/sessions/{unknown}", headers=user["headers"]), 404, "SESSION_NOT_FOUND")
    assert_error(send(client, user, unknown, "hi"), 404, "SESSION_NOT_FOUND")
    token = new_session(client, user)
    stranger = bearer(register(client)["accessToken"])
    client.post("/auth/accept-terms", json={}, headers=stranger)
    assert_error(client.get(f"/sessions/{token}", headers=stranger), 404, "SESSION_NOT_FOUND")
    assert_error(client.post("/chat", json={"sessionToken": token, "message": "hi"}, headers=stranger), 404, "SESSION_NOT_FOUND")


def test_an_expired_session_answers_410_until_purged(client, user):
    token = new_session(client, user, ttlSeconds=1)
    time.sleep(1.5)
    assert_error(client.get(f"/sessions/{token}", headers=user["headers"]), 410, "SESSION_EXPIRED")
    assert_error(send(client, user, token, "hi"), 410, "SESSION_EXPIRED")
    assert client.delete(f"/sessions/{token}", headers=user["headers"]).status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "nonsense"}, "model"),
        ({"model": "madeup:model"}, "model"),
        ({"ttlSeconds": 0}, "ttlSeconds"),
        ({"ttlSeconds": 604801}, "ttlSeconds"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_sessions_are_refused(client, user, body, field):
    response = client.post("/sessions", json=body, headers=user["headers"])
    assert_error(response, 400, "VALIDATION_ERROR")
    assert response.json()["details"][0]["field"] == field


def test_a_session_on_an_unknown_site_is_refused(client, user):
    assert_error(client.post("/sessions", json={"siteIds": ["site_nope"]}, headers=user["headers"]), 404, "NOT_FOUND")


def test_echo_without_tools(client, user):
    token = new_session(client, user)
    response = send(client, user, token, "hello there")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "sessionToken": token,
        "message": {"role": "assistant", "content": "echo: hello there", "finishReason": "stop"},
        "toolCalls": [],
        "creditsUsed": 1,
        "usage": {"inputTokens": 3, "outputTokens": 5},  # local:echo counts characters / 4, rounded up
    }
    assert messages(client, user, token) == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "echo: hello there", "finishReason": "stop"},
    ]


@pytest.mark.parametrize("message", ["", "x" * 32_001])
def test_empty_or_huge_messages(client, user, message):
    token = new_session(client, user)
    assert_error(send(client, user, token, message), 400, "VALIDATION_ERROR")


def test_a_tool_call_end_to_end(client, user, site):
    connected = connect(client, user, site)
    name = connected["tools"][0]["prefixedName"]
    token = new_session(client, user)
    response = send(client, user, token, f'Look this up\ncall {name} {{"q": "lamps"}}')
    assert response.status_code == 200, response.text
    body = response.json()
    expected_result = {"received": {"q": "lamps"}, "authorization": "Bearer site-token"}
    assert body["message"]["content"] == f"{name} -> {json.dumps(expected_result, separators=(',', ':'))}"
    (call,) = body["toolCalls"]
    assert (call["tool"], call["siteId"], call["arguments"], call["status"]) == (name, connected["id"], {"q": "lamps"}, "ok")
    assert isinstance(call["durationMs"], int)
    assert body["creditsUsed"] == 3  # two model turns and one tool call
    # The site got the original tool name, the arguments and the decrypted token.
    (request,) = [r for r in site.requests if r.path == "/tools/search"]
    assert json.loads(request.body) == {"q": "lamps"}
    assert request.headers["authorization"] == "Bearer site-token"
    assert messages(client, user, token)[1]["toolCalls"] == body["toolCalls"]


def test_invented_tools_and_bad_arguments_go_back_to_the_model(client, user, site):
    name = connect(client, user, site)["tools"][0]["prefixedName"]
    token = new_session(client, user)
    response = send(client, user, token, f'call nowhere_tool {{}}\ncall {name} {{"q": ""}}')
    assert response.status_code == 200, response.text
    statuses = [(call["tool"], call["status"]) for call in response.json()["toolCalls"]]
    assert statuses == [("nowhere_tool", "error"), (name, "error")]
    assert not [r for r in site.requests if r.path == "/tools/search"]  # nothing left for the site
    # Neither call reached a site, so neither is charged: only the three model turns are
    # (local:echo makes one call per turn, then answers).
    assert response.json()["creditsUsed"] == 3


def test_allow_and_deny_lists(client, user, site):
    name = connect(client, user, site)["tools"][0]["prefixedName"]
    denied = new_session(client, user, toolAllowList=[name.split("_")[0] + "*"], toolDenyList=[name])
    response = send(client, user, denied, f'call {name} {{"q": "x"}}')
    assert response.json()["toolCalls"][0]["status"] == "error"  # deny wins over allow
    allowed = new_session(client, user, toolAllowList=[name[:5] + "*"])
    assert send(client, user, allowed, f'call {name} {{"q": "x"}}').json()["toolCalls"][0]["status"] == "ok"


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (lambda s, p, h, b: (500, {"error": "boom"}), 502, "TOOL_EXECUTION_ERROR"),
        (lambda s, p, h, b: (200, b"<html>not json</html>"), 502, "TOOL_EXECUTION_ERROR"),
        (lambda s, p, h, b: (200, b'"' + b"x" * (10 * 1024 * 1024) + b'"'), 502, "TOOL_EXECUTION_ERROR"),
    ],
)
def test_tool_failures_fail_the_exchange_and_save_nothing(client, user, answer, status, code):
    failing = TestSite(manifest=rest_manifest, routes={("POST", "/tools/search"): answer})
    try:
        name = connect(client, user, failing)["tools"][0]["prefixedName"]
        token = new_session(client, user)
        assert_error(send(client, user, token, f'call {name} {{"q": "x"}}'), status, code)
        assert messages(client, user, token) == []
    finally:
        failing.close()


def test_an_unreachable_site_is_site_unavailable(client, user, site):
    name = connect(client, user, site)["tools"][0]["prefixedName"]
    site.close()
    token = new_session(client, user)
    assert_error(send(client, user, token, f'call {name} {{"q": "x"}}'), 503, "SITE_UNAVAILABLE")
    assert messages(client, user, token) == []


def test_the_deadline_cuts_a_hanging_site(client, user):
    released = threading.Event()

    def hang(site, path, headers, body):
        released.wait(120)  # past CHAT_TIMEOUT_SECONDS of the test stack, until the test ends
        return 200, {}

    hanging = TestSite(manifest=rest_manifest, routes={("POST", "/tools/search"): hang})
    try:
        name = connect(client, user, hanging)["tools"][0]["prefixedName"]
        token = new_session(client, user)
        assert_error(send(client, user, token, f'call {name} {{"q": "x"}}'), 504, "CHAT_TIMEOUT")
        assert messages(client, user, token) == []
    finally:
        released.set()
        hanging.close()


def test_streaming_event_order(client, user, site):
    name = connect(client, user, site)["tools"][0]["prefixedName"]
    token = new_session(client, user)
    response = send(client, user, token, f'call {name} {{"q": "x"}}', stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in response.text.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names == ["tool_use", "tool_result", "text", "done"]
    done = json.loads(events[-1][1].removeprefix("data: "))
    assert done["creditsUsed"] == 3 and done["toolCalls"][0]["status"] == "ok"
    by_accept = client.post("/chat", json={"sessionToken": token, "message": "hi"}, headers={**user["headers"], "Accept": "text/event-stream"})
    assert [line for line in by_accept.text.splitlines() if line.startswith("event:")] == ["event: text", "event: done"]


def test_a_failed_stream_ends_with_an_error_event(client, user):
    failing = TestSite(manifest=rest_manifest, routes={("POST", "/tools/search"): lambda s, p, h, b: (500, {})})
    try:
        name = connect(client, user, failing)["tools"][0]["prefixedName"]
        token = new_session(client, user)
        response = send(client, user, token, f'call {name} {{"q": "x"}}', stream=True)
        # The status line left with the first event (tool_use), so the error is in the error event.
        assert response.status_code == 200
        names = [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event:")]
        assert names == ["tool_use", "error"]
        error = json.loads(response.text.strip().split("\n\n")[-1].split("\n")[1].removeprefix("data: "))
        assert (error["code"], error["statusCode"]) == ("TOOL_EXECUTION_ERROR", 502)
        assert messages(client, user, token) == []
        # An error before any event still sets the status, as the only event of the stream.
        unknown = send(client, user, "sess_" + "x" * 43, "hi", stream=True)
        assert unknown.status_code == 404 and unknown.text.startswith("event: error\n")
    finally:
        failing.close()


class BlockedTool:
    """A site whose tool answers only once the test releases it, so a test knows where the exchange is."""

    def __init__(self) -> None:
        self.called, self.release = threading.Event(), threading.Event()
        self.site = TestSite(manifest=rest_manifest, routes={("POST", "/tools/search"): self._answer})

    def _answer(self, site, path, headers, body):
        self.called.set()
        assert self.release.wait(60), "the test never released the tool"
        return 200, {"found": json.loads(body)["q"]}


def sse_events(lines):
    """(event, data) pairs from an iterator of SSE lines, one at a time, as they arrive."""
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


def test_streamed_events_arrive_while_the_exchange_runs(client, user):
    tool_site = BlockedTool()
    try:
        name = connect(client, user, tool_site.site)["tools"][0]["prefixedName"]
        token = new_session(client, user)
        body = {"sessionToken": token, "message": f'call {name} {{"q": "lamps"}}', "stream": True}
        with client.stream("POST", "/chat", json=body, headers=user["headers"]) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response.iter_lines())
            first = next(events)
            # tool_use arrived while the site still holds the call: nothing can have buffered it.
            assert first == ("tool_use", {"id": "call_1", "tool": name, "arguments": {"q": "lamps"}})
            assert not tool_site.release.is_set()
            tool_site.release.set()
            rest = list(events)
        assert [event for event, _ in rest] == ["tool_result", "text", "done"]
        assert rest[0][1]["result"] == {"found": "lamps"}
        assert rest[-1][1]["creditsUsed"] == 3
        assert [m["role"] for m in messages(client, user, token)] == ["user", "assistant"]
    finally:
        tool_site.release.set()
        tool_site.site.close()


def _chat_over_a_socket(stack, headers, body):
    """POST /chat on a raw socket, so the test can hang up mid-stream."""
    host, port = stack.gateway.server_address[:2]
    connection = socket.create_connection((host, port), timeout=60)
    payload = json.dumps(body).encode()
    head = ["POST /chat HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json", f"Content-Length: {len(payload)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    return connection


def _aborted_exchanges(stack, token):
    dynamodb = stack.emulator.client("dynamodb")
    items = dynamodb.query(
        TableName="ConduitTable",
        KeyConditionExpression="PK = :pk AND begins_with(SK, :abort)",
        ExpressionAttributeValues={":pk": {"S": f"SESSION#{token}"}, ":abort": {"S": "ABORT#"}},
    )["Items"]
    return [{key: next(iter(value.values())) for key, value in item.items()} for item in items]


def test_a_client_that_hangs_up_mid_stream_aborts_the_exchange(client, user, local_stack):
    tool_site = BlockedTool()
    try:
        name = connect(client, user, tool_site.site)["tools"][0]["prefixedName"]
        token = new_session(client, user)
        balance = client.get("/billing", headers=user["headers"]).json()["credits"]
        body = {"sessionToken": token, "message": f'call {name} {{"q": "lamps"}}', "stream": True}
        connection = _chat_over_a_socket(local_stack, user["headers"], body)
        received = b""
        while b"event: tool_use" not in received:
            chunk = connection.recv(65536)
            assert chunk, "the stream ended before tool_use"
            received += chunk
        assert tool_site.called.wait(60)  # the tool call is in flight, paid for, and held by the site
        connection.close()
        tool_site.release.set()

        deadline = time.monotonic() + 60  # a generous bound on the wait, not a measured duration
        while not (aborted := _aborted_exchanges(local_stack, token)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(aborted) == 1, "no STREAM_ABORTED record"
        (record,) = aborted
        assert record["code"] == "STREAM_ABORTED" and record["creditsUsed"] == "2"  # the model turn and the tool call
        assert [(c["tool"], c["status"]) for c in json.loads(record["toolCallsJson"])] == [(name, "ok")]
        assert messages(client, user, token) == []  # no partial answer, and no user message either
        # What was done stays paid, and nothing ran after the client left (no second model turn).
        assert client.get("/billing", headers=user["headers"]).json()["credits"] == balance - 2
        ledger = client.get("/billing/ledger", headers=user["headers"]).json()["items"]
        assert [entry["reason"] for entry in ledger[:2]] == ["chat: tool 1", "chat: model turn 1"]
    finally:
        tool_site.release.set()
        tool_site.site.close()


def test_the_outgoing_limit_stops_calls_to_a_domain(client, user, site):
    name = connect(client, user, site)["tools"][0]["prefixedName"]
    token = new_session(client, user)
    four_calls = "\n".join(f'call {name} {{"q": "{n}"}}' for n in range(4))
    wait_for_room_in_the_minute()
    assert send(client, user, token, four_calls).status_code == 200
    assert send(client, user, token, four_calls).status_code == 200
    refused = send(client, user, token, four_calls)  # the 11th call of the minute
    assert_error(refused, 429, "OUTGOING_RATE_LIMITED")
    assert int(refused.headers["Retry-After"]) >= 1
    assert len([r for r in site.requests if r.path == "/tools/search"]) == 10  # no call left after the limit


def test_no_credits_and_exact_spending_under_parallel_chats(client, user, admin, local_stack):
    token = new_session(client, user)
    balance = client.get("/billing", headers=user["headers"]).json()["credits"]
    url = f"/admin/accounts/{user['account']}/credits"
    client.post(url, json={"credits": 3 - balance, "reason": "leave 3"}, headers=admin)

    def chat(_):
        return httpx.post(local_stack.url + "/chat", json={"sessionToken": token, "message": "hi"}, headers=user["headers"], timeout=60)

    with ThreadPoolExecutor(max_workers=6) as executor:
        responses = list(executor.map(chat, range(6)))
    assert sorted(r.status_code for r in responses) == [200] * 3 + [402] * 3
    assert {r.json()["code"] for r in responses if r.status_code == 402} == {"NO_CREDITS"}
    assert client.get("/billing", headers=user["headers"]).json()["credits"] == 0
    assert len(messages(client, user, token)) == 6  # three exchanges, two messages each
