"""The OpenAPI document is generated from the code and committed; it must not drift."""

from __future__ import annotations

import json

from shared import openapi


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
