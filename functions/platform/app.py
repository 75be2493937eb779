"""Platform routes: health, the OpenAPI document of the whole API, and its browsable page."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from aws_lambda_powertools.event_handler import Response, content_types
from pydantic import BaseModel

from conduit.http.api import handler_for, make_resolver
from conduit.identity.gate import public

app = make_resolver()

# Generated from every function's routes by `make openapi` (a test fails on drift).
OPENAPI_DOCUMENT = (Path(__file__).parent / "openapi.json").read_text()


class Health(BaseModel):
    status: Literal["ok"]


@app.get("/health", tags=["Platform"], summary="Liveness check (no auth)", response_description="The API is up")
@public()
def health() -> Health:
    return Health(status="ok")


@app.get("/openapi.json", include_in_schema=False)
@public()
def openapi_document():  # noqa: ANN201 - a Response annotation breaks schema generation
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=OPENAPI_DOCUMENT)


@cache
def docs_page() -> str:
    """Swagger UI with its assets inlined (Powertools ships them): no CDN needed."""
    # Imported here: its package loads Powertools' OpenAPI models (over 100 ms of a cold start that
    # /health and /openapi.json do not need).
    from aws_lambda_powertools.event_handler.openapi import swagger_ui
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    assets = Path(swagger_ui.__file__).parent
    return generate_swagger_html(
        spec=OPENAPI_DOCUMENT.replace("</", "<\\/"),  # keep "</script>" inside the spec inert
        swagger_js=(assets / "swagger-ui-bundle.min.js").read_text(),
        swagger_css=(assets / "swagger-ui.min.css").read_text(),
        swagger_base_url="",
        oauth2_config=None,
        persist_authorization=True,
    )


@app.get("/docs", include_in_schema=False)
@public()
def docs():  # noqa: ANN201 - as above
    # The page links its document as /docs?format=json (Swagger UI's "url" under the title): that
    # link serves the JSON itself, as /openapi.json does.
    if (app.current_event.query_string_parameters or {}).get("format") == "json":
        return openapi_document()
    return Response(status_code=200, content_type="text/html", body=docs_page())


lambda_handler = handler_for(app)
