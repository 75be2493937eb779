"""The local stack as `make dev` serves it: routes from template.yaml, real HTTP, real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conduit.http.api import MAX_BODY_BYTES
from shared.local.routing import Router, match_route
from shared.local.template import Route

from .conftest import ROOT

NOT_FOUND = {"error": "Route not found", "code": "NOT_FOUND", "statusCode": 404}
pytestmark = pytest.mark.stack


def test_health(api):
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"].startswith("application/json")


def test_openapi_document_is_served(api):
    response = api.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert "/health" in document["paths"]
    assert document == json.loads((ROOT / "functions" / "platform" / "openapi.json").read_text())


def test_docs_page_is_browsable(api):
    response = api.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in response.text and '"/health"' in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/no/such/route"), ("POST", "/health"), ("DELETE", "/docs"), ("TRACE", "/health"), ("BREW", "/auth/me")],
)
def test_unknown_route_or_method_is_404_not_found(api, method, path):
    response = api.request(method, path)
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_body_over_256_kib_is_validation_error(api):
    response = api.request("GET", "/health", content=b"x" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR" and body["statusCode"] == 400
    assert body["details"] == [{"field": "body", "message": f"must be at most {MAX_BODY_BYTES} bytes"}]


def test_body_over_api_gateway_limit_gets_the_gateway_response(api):
    response = api.request("GET", "/health", content=b"x" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"


def test_parallel_requests_each_get_their_own_answer(api, local_stack):
    """Concurrent invocations run in separate environments: no request sees another's event."""
    paths = ["/health", "/no/such/route"] * 12
    with ThreadPoolExecutor(max_workers=8) as executor:
        responses = list(executor.map(lambda path: httpx.get(local_stack.url + path, timeout=30), paths))
    for path, response in zip(paths, responses, strict=True):
        if path == "/health":
            assert (response.status_code, response.json()) == (200, {"status": "ok"})
        else:
            assert (response.status_code, response.json()) == (404, NOT_FOUND)


def test_routing_prefers_literal_then_parameter_then_greedy():
    def rank(route_path, path):
        matched = match_route(Route("GET", route_path), [part for part in path.split("/") if part])
        return matched

    assert rank("/vault/sites/{siteId}", "/vault/sites/site_1") == ((0, 0, 1), {"siteId": "site_1"})
    assert rank("/auth/{proxy+}", "/auth/a/b") == ((0, 2), {"proxy": "a/b"})
    assert rank("/auth/{proxy+}", "/auth") is None
    assert rank("/health", "/health/x") is None
    assert rank("/health", "/healthz") is None


def test_function_url_mount_strips_its_prefix():
    class Pool:
        class spec:  # noqa: N801 - mimics FunctionPool.spec
            logical_id = "AgentsFunction"
            routes = [Route("GET", "/agents/{proxy+}")]
            url_prefix = None

    class UrlPool:
        class spec:  # noqa: N801
            logical_id = "StripeWebhookFunction"
            routes = []
            url_prefix = "/stripe/webhook"

    router = Router([Pool, UrlPool])  # type: ignore[list-item]
    match = router.match("POST", "/stripe/webhook")
    assert match.pool is UrlPool and match.route is None and match.url_path == "/"
    assert router.match("POST", "/stripe/webhook/x").url_path == "/x"
    assert router.match("POST", "/stripe/webhookx") is None
    assert router.match("GET", "/agents/a1").path_parameters == {"proxy": "a1"}


def test_function_url_exact_paths_pass_through_unchanged():
    class McpPool:
        class spec:  # noqa: N801
            logical_id = "McpFunction"
            routes = []
            url_prefix = None
            url_paths = ("/mcp", "/.well-known/oauth-protected-resource/mcp")

    router = Router([McpPool])  # type: ignore[list-item]
    assert router.match("POST", "/mcp").url_path == "/mcp"
    assert router.match("GET", "/.well-known/oauth-protected-resource/mcp").url_path == "/.well-known/oauth-protected-resource/mcp"
    assert router.match("POST", "/mcp/x") is None and router.match("GET", "/.well-known/other") is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_dev_entry_point_serves_on_port_and_stops_on_ctrl_c():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.local"],
        cwd=ROOT,
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline, "local stack did not start"
                time.sleep(0.2)
        assert response.json() == {"status": "ok"}
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "Conduit local stack stopped." in output
    assert "Traceback" not in output


def test_in_process_moto_cannot_reset_the_stack(client):
    """mock_aws resets every moto backend of its process; the stack's emulator lives in its own."""
    from moto import mock_aws

    from .helpers import register

    register(client)
    with mock_aws():
        pass
    register(client)  # the table is still there


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_non_json_body_is_a_validation_error_not_a_500(client, content_type):
    response = client.post(
        "/auth/register",
        content=b'{"email": "ct@example.com", "password": "long enough"}',
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 400
    assert response.json()["details"] == [{"field": "Content-Type", "message": "must be application/json"}]


def test_gateway_listen_backlog_does_not_drop_handshakes_under_load():
    # socketserver's default backlog (5) let bursts overflow the accept queue; the kernel then
    # drops the handshake and the client retries after 1, 3, 7 s: the 7-9 s stalls under load.
    from shared.local.gateway import Gateway

    assert Gateway.request_queue_size >= 128
