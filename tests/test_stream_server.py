"""The server behind the Lambda Web Adapter (AWS): requests back into Function URL events, chunks out as they come."""

from __future__ import annotations

import json
import socket
import threading

import httpx
import pytest

from conduit.http.stream_server import make_server

REQUEST_CONTEXT = {"http": {"method": "POST", "path": "/", "sourceIp": "203.0.113.9"}, "requestId": "req-1"}
LAMBDA_CONTEXT = {"request_id": "inv-1", "deadline": 0, "env_config": {"function_name": "ChatStream", "memory": 1024}}
ADAPTER_HEADERS = {"x-amzn-request-context": json.dumps(REQUEST_CONTEXT), "x-amzn-lambda-context": json.dumps(LAMBDA_CONTEXT)}


@pytest.fixture
def serve():
    servers = []

    def start(handler):
        server = make_server(handler, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_chunks_reach_the_client_while_the_handler_runs(serve):
    proceed, calls = threading.Event(), []

    def handler(event, context):
        calls.append((event, context))
        stream = context.response_stream
        assert stream.start(200, {"Content-Type": "text/event-stream"})
        assert stream.write(b"event: one\n\n")
        assert proceed.wait(30), "the client never read the first chunk"
        assert stream.write(b"event: two\n\n")
        return {"statusCode": 500, "body": "ignored: the stream was the response"}

    url = serve(handler)
    with httpx.stream("POST", url + "/?a=1", json={"m": "hi"}, headers=ADAPTER_HEADERS, timeout=30) as response:
        assert response.status_code == 200 and response.headers["transfer-encoding"] == "chunked"
        lines = response.iter_lines()
        assert next(lines) == "event: one"  # before the handler may write the second chunk
        proceed.set()
        assert [line for line in lines if line] == ["event: two"]
    ((event, context),) = calls
    assert (event["version"], event["rawPath"], event["queryStringParameters"]) == ("2.0", "/", {"a": "1"})
    assert event["requestContext"] == REQUEST_CONTEXT and json.loads(event["body"]) == {"m": "hi"}
    assert not set(ADAPTER_HEADERS) & set(event["headers"])
    assert (context.aws_request_id, context.function_name, context.memory_limit_in_mb) == ("inv-1", "ChatStream", 1024)


def test_a_response_returned_whole_is_sent_whole(serve):
    url = serve(lambda event, context: {"statusCode": 201, "headers": {"X-Kind": "whole"}, "body": '{"ok":true}'})
    response = httpx.post(url + "/", json={}, headers=ADAPTER_HEADERS, timeout=30)
    assert (response.status_code, response.headers["x-kind"], response.json()) == (201, "whole", {"ok": True})


def test_the_adapters_readiness_check_does_not_invoke_the_function(serve):
    calls = []
    url = serve(lambda event, context: calls.append(event))
    assert httpx.get(url + "/", timeout=30).status_code == 200
    assert calls == []


def test_chunks_are_sent_without_waiting_for_the_previous_ones_ack(serve):
    # Nagle's algorithm would hold each small chunk until the adapter ACKs the one before, and
    # Linux delays that ACK by up to 40 ms: every streamed delta would arrive that much late.
    options = []

    def handler(event, context):
        connection = context.response_stream._request.connection
        options.append(connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return {"statusCode": 200, "body": ""}

    url = serve(handler)
    assert httpx.post(url + "/", json={}, headers=ADAPTER_HEADERS, timeout=30).status_code == 200
    assert options and options[0] != 0
