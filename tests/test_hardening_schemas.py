"""Issue 16, class 1: no supplied JSON Schema fetches anything, and nothing fetches around the guard."""

from __future__ import annotations

import socket
import threading
import urllib.request

import pytest

from conduit.platform import json_schemas
from conduit.agents.definitions import check_webhook_schema
from conduit.platform.errors import ConduitError
from conduit.net.outbound import GuardedClient
from conduit.vault.tool_calls import check_arguments
from conduit.agents.webhooks import _check_payload

from .helpers import assert_error, signed_up
from .sites import TestSite

_inside_guard = threading.local()


@pytest.fixture
def only_the_guard_connects(monkeypatch):
    """Every socket connect of the test's thread outside GuardedClient._send is recorded (and refused).

    Only the test's thread: a session-wide local stack in the same worker (its scheduler polls
    moto on loopback) is not code under test here."""
    unguarded: list[object] = []
    real_connect, real_send = socket.socket.connect, GuardedClient._send
    test_thread = threading.get_ident()

    def connect(self, address):
        if threading.get_ident() == test_thread and not getattr(_inside_guard, "on", False):
            unguarded.append(address)
            raise OSError(f"unguarded outbound socket to {address!r}")
        return real_connect(self, address)

    def send(self, *args, **kwargs):
        _inside_guard.on = True
        try:
            return real_send(self, *args, **kwargs)
        finally:
            _inside_guard.on = False

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(GuardedClient, "_send", send)
    yield unguarded
    assert unguarded == [], f"sockets opened around the guard: {unguarded}"


@pytest.fixture
def site():
    site = TestSite(manifest={"type": "integer"})
    yield site
    site.close()


def remote(site):
    return {"type": "object", "properties": {"n": {"$ref": f"{site.origin}/.well-known/servio.json"}}}


def test_the_socket_fixture_catches_a_fetch_around_the_guard_and_lets_the_guard_through(only_the_guard_connects, site):
    assert GuardedClient(allow_loopback=True).request("GET", f"{site.origin}/.well-known/servio.json").json() == {"type": "integer"}
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{site.origin}/.well-known/servio.json", timeout=2)  # noqa: S310 - the point of the test
    assert only_the_guard_connects == [("127.0.0.1", site.server.server_address[1])]
    only_the_guard_connects.clear()
    assert len(site.requests) == 1


@pytest.mark.parametrize("keyword", ["$ref", "$dynamicRef"])
def test_a_remote_reference_is_a_problem_when_stored(keyword, site):
    schema = {"type": "object", "properties": {"n": {keyword: f"{site.origin}/s.json"}}}
    assert json_schemas.schema_problems(schema)
    with pytest.raises(ConduitError) as raised:
        check_webhook_schema(schema)
    assert raised.value.code == "VALIDATION_ERROR" and raised.value.details[0]["field"].startswith("webhookSchema")
    assert site.requests == []


@pytest.mark.parametrize(
    "schema",
    [
        {"$id": "http://127.0.0.1:1/", "type": "object"},
        {"type": "object", "properties": {"n": {"$ref": "#/$defs/none"}}},
        {"type": "object", "properties": {"n": {"$ref": "other.json#/x"}}},
        {"type": "object", "properties": {"n": {"$ref": 7}}},
        {"type": "object", "properties": {"n": {"$anchor": "a"}}},
        [],
        "string",
    ],
)
def test_references_outside_the_schema_are_problems(schema):
    assert json_schemas.schema_problems(schema)


def test_local_references_are_kept_and_followed():
    schema = {"type": "object", "properties": {"n": {"$ref": "#/$defs/n"}}, "$defs": {"n": {"type": "integer"}}}
    assert json_schemas.schema_problems(schema) == []
    assert json_schemas.instance_problems(schema, {"n": 1}) == []
    assert json_schemas.instance_problems(schema, {"n": "x"}) == [("n", "'x' is not of type 'integer'")]


def test_the_meta_schema_reference_resolves_offline(only_the_guard_connects):
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"n": {"$ref": "#"}}}
    assert json_schemas.schema_problems(schema) == []
    assert json_schemas.instance_problems(schema, {"n": {"n": {}}}) == []


def test_a_stored_remote_reference_is_a_validation_problem_when_used_and_fetches_nothing(only_the_guard_connects, site):
    schema = remote(site)  # stored before the rule existed
    with pytest.raises(ConduitError) as raised:
        check_arguments({"name": "t", "inputSchema": schema}, {"n": 1})
    assert raised.value.code == "VALIDATION_ERROR"
    with pytest.raises(ConduitError) as raised:
        _check_payload(schema, {"n": 1})
    assert raised.value.code == "WEBHOOK_PAYLOAD_INVALID"
    assert site.requests == []


def test_a_schema_recursing_without_end_is_a_problem_not_a_crash():
    assert json_schemas.instance_problems({"$ref": "#"}, {}) == [("", "the schema cannot be applied")]


@pytest.mark.stack
def test_a_webhook_schema_with_a_remote_reference_is_refused_through_the_stack(client, admin, site):
    account, headers = signed_up(client)
    assert client.patch(f"/admin/accounts/{account}", json={"tier": "pro"}, headers=admin).status_code == 200
    for schema in (remote(site), {"type": "object", "properties": {"n": {"$ref": "http://169.254.169.254/latest/meta-data/"}}}):
        response = client.post(
            "/agents",
            json={"name": "A", "systemPrompt": "p", "triggerType": "webhook", "webhookSchema": schema},
            headers=headers,
        )
        assert_error(response, 400, "VALIDATION_ERROR")
        assert response.json()["details"][0]["field"].startswith("webhookSchema")
    assert client.get("/agents", headers=headers).json()["items"] == []
    assert site.requests == []
