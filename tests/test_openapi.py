"""The OpenAPI document is generated from the code and committed; it must not drift."""

from __future__ import annotations

import json

from conduit.platform.views import View
from shared import openapi


class Answer(View):
    name: str


def test_committed_document_matches_the_code():
    assert openapi.DOCUMENT_PATH.read_text() == openapi.generate(), "stale: run `make openapi`"


def test_document_covers_every_function_route():
    document = json.loads(openapi.generate())
    assert document["info"]["title"] == "Conduit API"
    assert "/health" in document["paths"]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_every_operation_documents_the_error_body_and_its_auth():
    document = json.loads(openapi.DOCUMENT_PATH.read_text())
    assert document["components"]["schemas"]["ErrorBody"]["required"] == ["error", "code", "statusCode"]
    assert "HTTPValidationError" not in json.dumps(document)  # Powertools' 422 shape is never sent
    public = {("get", "/health"), ("post", "/auth/register"), ("post", "/auth/login"), ("post", "/auth/refresh")}
    public.add(("post", "/stripe/webhook"))  # Stripe signs each delivery instead
    public.add(("post", "/webhooks/{agentId}"))  # the agent's X-Webhook-Secret instead
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "422" not in responses
            assert responses["default"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
            if (method, path) in public:
                assert "security" not in operation and "401" not in responses
            else:
                assert operation["security"] == [{"bearerAuth": []}] and "401" in responses


def _operations(document: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, operation) for path, item in document["paths"].items() for method, operation in item.items()]


def _component(document: dict, schema: dict) -> dict:
    ref = schema.get("$ref", "")
    assert ref.startswith("#/components/schemas/"), f"not a component: {schema}"
    return document["components"]["schemas"][ref.removeprefix("#/components/schemas/")]


def test_every_operation_documents_its_success_body():
    """A model for every 2xx JSON body (not a bare object), the events of every stream, or no content (204)."""
    document = json.loads(openapi.DOCUMENT_PATH.read_text())
    operations = _operations(document)
    routes = set()  # two functions (ChatFunction, ChatStreamFunction) serve chat's module
    for _, module in openapi._function_modules():
        for name in ("app", "url_app"):
            resolver = getattr(module, name, None)
            for route in [*getattr(resolver, "_static_routes", []), *getattr(resolver, "_dynamic_routes", [])]:
                if route.include_in_schema:
                    routes.add((module.__file__, name, route.method, route.path))
    assert len(operations) == len(routes) == 55  # every route of the REST API and its Function URLs
    undocumented = []
    for method, path, operation in operations:
        successes = {status: answer for status, answer in operation["responses"].items() if status.startswith("2")}
        documented = bool(successes)
        for status, answer in successes.items():
            content = answer.get("content")
            if status == "204":
                documented &= content is None
                continue
            documented &= bool(content)
            for media_type, media in (content or {}).items():
                component = _component(document, media.get("schema", {}))
                if media_type == "application/json":
                    documented &= bool(component.get("properties"))
                elif media_type == "text/event-stream":
                    events = [_component(document, event) for event in component["oneOf"]]
                    documented &= all(event["properties"]["data"].get("contentSchema") for event in events)
                else:
                    documented = False
        if not documented:
            undocumented.append(f"{method.upper()} {path}")
    assert undocumented == []


def test_the_chat_stream_documents_each_event():
    document = json.loads(openapi.DOCUMENT_PATH.read_text())
    chat = document["paths"]["/chat"]["post"]["responses"]
    stream = _component(document, chat["200"]["content"]["text/event-stream"]["schema"])
    events = {}
    for reference in stream["oneOf"]:
        event = _component(document, reference)
        events[event["properties"]["event"]["const"]] = event["properties"]["data"]["contentSchema"]["$ref"].rsplit(
            "/", 1
        )[1]
    assert events == {
        "text": "TextEvent",
        "tool_use": "ToolUseEvent",
        "tool_result": "ToolResultEvent",
        "done": "ChatAnswer",
        "error": "ErrorBody",
    }
    assert stream["discriminator"]["propertyName"] == "event"
    assert chat["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatAnswer"}
    # A failure before the first event is that event, with the error's status.
    assert chat["404"]["content"]["text/event-stream"]["schema"] == {"$ref": "#/components/schemas/ErrorFrame"}


def test_every_documented_error_code_is_in_the_catalogue_with_that_status():
    from conduit.platform.errors import CATALOGUE

    document = json.loads(openapi.DOCUMENT_PATH.read_text())
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        for status, answer in responses.items():
            if status.startswith("2"):
                continue
            codes = answer.get("x-error-codes", [])
            assert status == "default" or codes, f"{where} {status} names no code"
            for code in codes:
                assert code in CATALOGUE, f"{where} {status}: {code} is not in the catalogue"
                expected = CATALOGUE[code].status
                if status == "default":  # a status the operation does not list on its own
                    assert str(expected) not in responses, f"{where}: {code} belongs under {expected}"
                    assert f"{expected} `{code}`" in answer["description"]
                else:
                    assert expected == int(status), f"{where}: {code} is {expected}, documented under {status}"
                    assert f"`{code}`" in answer["description"]
        # The gate's codes and the fault, on every operation.
        assert "VALIDATION_ERROR" in responses["400"]["x-error-codes"], where
        assert responses["500"]["x-error-codes"] == ["INTERNAL_ERROR"], where


def test_routes_declare_their_own_error_codes():
    document = json.loads(openapi.DOCUMENT_PATH.read_text())
    paths = document["paths"]
    assert "AGENT_ALREADY_RUNNING" in paths["/agents/{agentId}/runs"]["post"]["responses"]["409"]["x-error-codes"]
    assert "RUN_NOT_CANCELLABLE" in paths["/runs/{runId}/cancel"]["post"]["responses"]["400"]["x-error-codes"]
    # 422s are listed under default (the document never keys 422: it would read as Powertools' shape).
    assert "MANIFEST_INVALID" in paths["/vault/sites"]["post"]["responses"]["default"]["x-error-codes"]
    assert "ADMIN_REQUIRED" in paths["/admin/users"]["get"]["responses"]["403"]["x-error-codes"]
    assert "TERMS_NOT_ACCEPTED" not in paths["/auth/me"]["get"]["responses"].get("403", {}).get("x-error-codes", [])
    # Routes that take no bearer credential list their other 401s under default.
    assert paths["/auth/login"]["post"]["responses"]["default"]["x-error-codes"] == ["UNAUTHORIZED"]
    assert paths["/webhooks/{agentId}"]["post"]["responses"]["default"]["x-error-codes"] == [
        "WEBHOOK_SECRET_INVALID",
        "WEBHOOK_PAYLOAD_INVALID",
    ]


def test_a_body_that_does_not_match_its_model_is_an_internal_error_without_detail(caplog):
    """Powertools checks each answer against the route's return annotation; a mismatch is our fault:
    logged (where, never the values) and answered 500 INTERNAL_ERROR, not a 400 describing the answer."""
    from conduit.http.api import make_resolver
    from conduit.identity.gate import public

    app = make_resolver()

    @app.get("/probe")
    @public()
    def probe() -> Answer:
        return {"name": "x", "secret": "s3cret"}  # a key the model does not have

    event = {
        "httpMethod": "GET",
        "path": "/probe",
        "resource": "/probe",
        "headers": {},
        "requestContext": {"identity": {"sourceIp": "127.0.0.1"}, "stage": "test"},
    }
    response = app.resolve(event, None)
    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {
        "error": "Internal server error",
        "code": "INTERNAL_ERROR",
        "statusCode": 500,
    }
    [record] = [
        record for record in caplog.records if record.getMessage() == "Answer does not match the route's response model"
    ]
    assert record.problems == [{"loc": ["response", "secret"], "type": "extra_forbidden"}]
    assert "s3cret" not in str(record.__dict__) and "s3cret" not in response["body"]
