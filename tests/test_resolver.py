"""The resolver factory: every failure becomes the one error body, never a 500 for bad input."""

from __future__ import annotations

import base64
import json
from typing import Annotated

import pytest
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, Field

from conduit.http import api
from conduit.http.api import MAX_BODY_BYTES, handler_for, make_resolver
from conduit.identity.gate import public
from conduit.platform.errors import ConduitError
from conduit.http.events import function_url_event, rest_event


class NewItem(BaseModel):
    name: str = Field(min_length=1)
    count: int
    tags: list[str] = []


def build_app(kind="rest"):
    app = make_resolver(kind)

    @app.post("/items")
    @public()
    def create_item(item: NewItem) -> dict:
        return {"name": item.name, "count": item.count}

    @app.get("/items/<item_id>")
    @public()
    def get_item(item_id: str, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict:
        return {"id": item_id, "limit": limit}

    @app.get("/limited")
    @public()
    def limited() -> dict:
        raise ConduitError("RATE_LIMITED", headers={"Retry-After": "7"})

    @app.get("/broken")
    @public()
    def broken() -> dict:
        raise RuntimeError("secret internals: password=hunter2")

    return app


APP = build_app()
HANDLER = handler_for(APP)


def call(method, path, *, body=None, raw=None, query="", base64_body=False, context=None, content_type=None):
    raw_bytes = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    headers = [("Content-Type", content_type)] if content_type else []
    event = rest_event("/{proxy+}", method, path, query=query, raw=raw_bytes, headers=headers)
    if base64_body:
        event["body"], event["isBase64Encoded"] = base64.b64encode(raw_bytes).decode(), True
    result = HANDLER(event, context)
    headers = {**(result.get("headers") or {}), **{k: v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()}}
    return result["statusCode"], json.loads(result["body"]), headers


def assert_error(status, body, code, expected_status):
    assert status == expected_status
    assert body["code"] == code and body["statusCode"] == expected_status
    assert isinstance(body["error"], str) and body["error"]
    assert set(body) <= {"error", "code", "statusCode", "details"}


def fields(body):
    return [detail["field"] for detail in body["details"]]


def test_valid_request_passes(lambda_context):
    assert call("POST", "/items", body={"name": "a", "count": 2}, context=lambda_context)[:2] == (
        200,
        {"name": "a", "count": 2},
    )


def test_malformed_json(lambda_context):
    status, body, _ = call("POST", "/items", raw=b'{"name": "a",', context=lambda_context)
    assert_error(status, body, "VALIDATION_ERROR", 400)
    assert fields(body) == ["body"]
    assert body["details"][0]["message"].startswith("Malformed JSON")


def test_wrong_type_names_the_field(lambda_context):
    status, body, _ = call("POST", "/items", body={"name": "a", "count": "many"}, context=lambda_context)
    assert_error(status, body, "VALIDATION_ERROR", 400)
    assert fields(body) == ["count"]
    assert "count" in body["error"]


def test_missing_fields_are_each_named(lambda_context):
    status, body, _ = call("POST", "/items", body={}, context=lambda_context)
    assert_error(status, body, "VALIDATION_ERROR", 400)
    assert sorted(fields(body)) == ["count", "name"]


def test_nested_field_path_uses_dots(lambda_context):
    status, body, _ = call("POST", "/items", body={"name": "a", "count": 1, "tags": ["x", 5]}, context=lambda_context)
    assert_error(status, body, "VALIDATION_ERROR", 400)
    assert fields(body) == ["tags.1"]


@pytest.mark.parametrize("payload", [b"[]", b'"text"', b"null", b"42"])
def test_body_that_is_not_an_object(lambda_context, payload):
    status, body, _ = call("POST", "/items", raw=payload, context=lambda_context)
    assert_error(status, body, "VALIDATION_ERROR", 400)


def test_missing_body(lambda_context):
    status, body, _ = call("POST", "/items", context=lambda_context)
    assert_error(status, body, "VALIDATION_ERROR", 400)


def test_body_not_utf8(lambda_context):
    status, body, _ = call("POST", "/items", raw=b'{"name": "\xff\xfe"}', base64_body=True, context=lambda_context)
    assert_error(status, body, "VALIDATION_ERROR", 400)
    assert fields(body) == ["body"]


def test_body_over_256_kib_is_refused_before_validation(lambda_context):
    padding = "x" * MAX_BODY_BYTES
    status, body, _ = call("POST", "/items", body={"name": padding, "count": 1}, context=lambda_context)
    assert_error(status, body, "VALIDATION_ERROR", 400)
    assert fields(body) == ["body"]


def test_body_of_exactly_256_kib_is_accepted(lambda_context):
    overhead = len(json.dumps({"name": "", "count": 1}).encode())
    payload = {"name": "x" * (MAX_BODY_BYTES - overhead), "count": 1}
    assert len(json.dumps(payload).encode()) == MAX_BODY_BYTES
    assert call("POST", "/items", body=payload, context=lambda_context)[0] == 200


def test_oversized_base64_body_is_measured_decoded(lambda_context):
    raw = json.dumps({"name": "x" * MAX_BODY_BYTES, "count": 1}).encode()
    status, body, _ = call("POST", "/items", raw=raw, base64_body=True, context=lambda_context)
    assert_error(status, body, "VALIDATION_ERROR", 400)


def test_query_parameter_type_and_range(lambda_context):
    assert call("GET", "/items/abc", query="limit=5", context=lambda_context)[:2] == (200, {"id": "abc", "limit": 5})
    for bad in ("limit=zero", "limit=0", "limit=101"):
        status, body, _ = call("GET", "/items/abc", query=bad, context=lambda_context)
        assert_error(status, body, "VALIDATION_ERROR", 400)
        assert fields(body) == ["query.limit"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/no/such/route"), ("DELETE", "/items"), ("GET", "/")])
def test_unknown_route_or_method(lambda_context, method, path):
    status, body, _ = call(method, path, context=lambda_context)
    assert (status, body) == (404, {"error": "Route not found", "code": "NOT_FOUND", "statusCode": 404})


def test_conduit_error_carries_status_and_headers(lambda_context):
    status, body, headers = call("GET", "/limited", context=lambda_context)
    assert_error(status, body, "RATE_LIMITED", 429)
    assert headers["Retry-After"] == "7"


def test_uncaught_fault_is_500_without_internals(lambda_context, monkeypatch):
    logged = []
    monkeypatch.setattr(api.logger, "exception", lambda message, **kwargs: logged.append(kwargs["extra"]))
    status, body, _ = call("GET", "/broken", context=lambda_context)
    assert (status, body) == (500, {"error": "Internal server error", "code": "INTERNAL_ERROR", "statusCode": 500})
    assert logged == [{"error_type": "RuntimeError"}]  # the log keeps what the client must not see


def test_function_url_resolver_uses_the_same_error_handling(lambda_context):
    url_app = build_app("function_url")
    handler = handler_for(url_app)
    result = handler(function_url_event("POST", "/items", raw=b"{oops"), lambda_context)
    assert result["statusCode"] == 400
    assert json.loads(result["body"])["code"] == "VALIDATION_ERROR"
    result = handler(function_url_event("GET", "/nowhere"), lambda_context)
    assert json.loads(result["body"]) == {"error": "Route not found", "code": "NOT_FOUND", "statusCode": 404}


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", "application/merge-patch+json", "nonsense"]
)
def test_a_body_declared_as_anything_but_json_is_refused(lambda_context, content_type):
    status, body, _ = call(
        "POST", "/items", body={"name": "a", "count": 1}, content_type=content_type, context=lambda_context
    )
    assert_error(status, body, "VALIDATION_ERROR", 400)
    assert fields(body) == ["Content-Type"]


@pytest.mark.parametrize("content_type", [None, "application/json", "Application/JSON; charset=utf-8"])
def test_json_content_types_and_none_are_read_as_json(lambda_context, content_type):
    status, _, _ = call("POST", "/items", body={"name": "a", "count": 1}, content_type=content_type, context=lambda_context)
    assert status == 200
