"""The gate every function's routes pass: terms and admin gates, dependency injection, DynamoDB cost."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
from aws_lambda_powertools.event_handler import Depends

from conduit.identity import login as identity
from conduit.http.api import handler_for, make_resolver
from conduit.identity.gate import Caller, current_caller, prefetch
from conduit.platform.aws import dynamodb_client
from conduit.http.events import rest_event
from conduit.repositories.base import Repository
from conduit.platform.settings import get_settings


def build_app():
    app = make_resolver()

    @app.get("/things")
    def things(caller: Annotated[Caller, Depends(current_caller)]) -> dict:
        return {"user": caller.user_id}

    @app.get("/admin/things")
    def admin_things(caller: Annotated[Caller, Depends(current_caller)]) -> dict:
        return {"admin": caller.user_id}

    @app.get("/auth/things")
    def auth_things(caller: Annotated[Caller, Depends(current_caller)]) -> dict:
        return {"user": caller.user_id}

    @app.get("/items/<itemId>")
    @prefetch(lambda path, account_id: [(f"ITEM#{account_id}#{path['itemId']}", "ITEM")])
    def item(itemId: str, caller: Annotated[Caller, Depends(current_caller)]) -> dict:  # noqa: N803
        found = Repository().get(f"ITEM#{caller.user_id}#{itemId}", "ITEM")
        return {"value": found["value"] if found else None}

    return handler_for(app)


@pytest.fixture
def handler(aws):
    return build_app()


def call(handler, path, token=None, context=None):
    headers = [("Authorization", f"Bearer {token}")] if token else []
    result = handler(rest_event("/{proxy+}", "GET", path, headers=headers), context)
    return result["statusCode"], json.loads(result["body"])


def test_terms_gate_outside_auth_routes(handler, lambda_context):
    session = identity.register("terms@example.com", "long password", None)
    status, body = call(handler, "/things", session.access_token, lambda_context)
    assert (status, body["code"]) == (403, "TERMS_NOT_ACCEPTED")
    assert call(handler, "/auth/things", session.access_token, lambda_context)[0] == 200
    identity.accept_terms(session.user.id, None)
    assert call(handler, "/things", session.access_token, lambda_context) == (200, {"user": session.user.id})


def test_raising_terms_version_makes_everyone_accept_again(handler, lambda_context, monkeypatch):
    session = identity.register("again@example.com", "long password", None)
    identity.accept_terms(session.user.id, None)
    assert call(handler, "/things", session.access_token, lambda_context)[0] == 200
    monkeypatch.setenv("TERMS_VERSION", "2027-01-01")
    get_settings.cache_clear()
    assert call(handler, "/things", session.access_token, lambda_context)[1]["code"] == "TERMS_NOT_ACCEPTED"


def test_admin_gate(handler, lambda_context, monkeypatch):
    monkeypatch.setenv("ADMIN_EMAILS", "boss@example.com, other@example.com")
    get_settings.cache_clear()
    member = identity.register("member@example.com", "long password", None)
    boss = identity.register("Boss@Example.com", "long password", None)
    for session in (member, boss):
        identity.accept_terms(session.user.id, None)
    assert call(handler, "/admin/things", member.access_token, lambda_context)[1]["code"] == "ADMIN_REQUIRED"
    assert call(handler, "/admin/things", boss.access_token, lambda_context) == (200, {"admin": boss.user.id})


def test_an_authenticated_call_costs_two_dynamodb_requests(handler, lambda_context):
    session = identity.register("cost@example.com", "long password", None)
    identity.accept_terms(session.user.id, None)
    calls = []
    dynamodb_client().meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    assert call(handler, "/things", session.access_token, lambda_context)[0] == 200
    assert calls == ["BatchGetItem", "UpdateItem"]  # user + login + account, then the rate counter


def test_a_key_authenticated_call_costs_the_same_two_requests(handler, lambda_context):
    from conduit.identity import api_keys

    session = identity.register("keycost@example.com", "long password", None)
    identity.accept_terms(session.user.id, None)
    key = api_keys.create_key(session.user.id, session.user.id, "free", "bench", None)["key"]
    calls = []
    dynamodb_client().meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    assert call(handler, "/things", key, lambda_context) == (200, {"user": session.user.id})
    assert calls == ["BatchGetItem", "UpdateItem"]  # user + key (live or revoked) + account, then the rate counter


def test_an_mcp_route_refuses_a_rest_access_token_before_reading_anything(aws, lambda_context):
    from conduit.identity import api_keys
    from conduit.identity.gate import mcp_credentials

    app = make_resolver()

    @app.get("/keyed")
    @mcp_credentials
    def keyed(caller: Annotated[Caller, Depends(current_caller)]) -> dict:
        return {"user": caller.user_id}

    handler = handler_for(app)
    session = identity.register("bound@example.com", "long password", None)
    identity.accept_terms(session.user.id, None)
    calls = []
    dynamodb_client().meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    status, body = call(handler, "/keyed", session.access_token, lambda_context)
    assert (status, body["code"], calls) == (401, "INVALID_TOKEN", [])
    key = api_keys.create_key(session.user.id, session.user.id, "free", "k", None)["key"]
    assert call(handler, "/keyed", key, lambda_context) == (200, {"user": session.user.id})


def test_a_prefetched_item_is_read_in_the_gates_one_batch_and_only_for_its_request(handler, lambda_context):
    session = identity.register("prefetch@example.com", "long password", None)
    identity.accept_terms(session.user.id, None)
    table = get_settings().table_name
    dynamodb_client().put_item(
        TableName=table, Item={"PK": {"S": f"ITEM#{session.user.id}#a"}, "SK": {"S": "ITEM"}, "value": {"S": "one"}}
    )
    calls = []
    dynamodb_client().meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    assert call(handler, "/items/a", session.access_token, lambda_context) == (200, {"value": "one"})
    assert calls == ["BatchGetItem", "UpdateItem"]  # the item came with user + login + account
    assert call(handler, "/items/b", session.access_token, lambda_context) == (200, {"value": None})  # absent: no GetItem either
    assert calls[2:] == ["BatchGetItem", "UpdateItem"]
    dynamodb_client().delete_item(TableName=table, Key={"PK": {"S": f"ITEM#{session.user.id}#a"}, "SK": {"S": "ITEM"}})
    # Each request reads afresh: nothing a gate read is served to a later request.
    assert call(handler, "/items/a", session.access_token, lambda_context) == (200, {"value": None})
    # A path parameter longer than any id stays out of the gate's batch (a key too long for DynamoDB
    # would fail the whole gate); the route reads, or refuses, it on its own.
    del calls[:]
    call(handler, "/items/" + "x" * 5000, session.access_token, lambda_context)
    assert calls == ["BatchGetItem", "UpdateItem", "GetItem"]
