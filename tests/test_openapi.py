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
