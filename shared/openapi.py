"""Generate the one OpenAPI document of the API from every function's resolver.

    python -m shared.openapi           # write functions/platform/openapi.json
    python -m shared.openapi --check   # exit 1 if the committed document is stale

Powertools' OpenAPIMerge imports each functions/*/app.py and merges the
schemas its routes and pydantic models declare: the document cannot drift
from the code, and a test runs --check.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "conduit"
DOCUMENT_PATH = ROOT / "functions" / "platform" / "openapi.json"
if str(LAYER) not in sys.path:
    sys.path.insert(0, str(LAYER))

from pydantic import Field  # noqa: E402 - the layer is on the path now

from conduit.platform.views import Omitted, View  # noqa: E402


# The error body (conduit.platform.errors.ConduitError.body() makes it), for the document only: no function needs it.
class ErrorDetail(View):
    field: str = Field(description="A body field by its dotted path (`tools.1.name`), `query.<name>`, a header, or `body`")
    message: str


class ErrorBody(View):
    """Every error has this body (API.md §1)."""

    error: str = Field(description="Human-readable description")
    code: str = Field(description="Catalogue code, e.g. VALIDATION_ERROR (layers/conduit/conduit/platform/errors.py)")
    statusCode: int = Field(description="Equal to the HTTP status")
    details: Annotated[list[ErrorDetail] | None, Omitted] = Field(
        None, description="VALIDATION_ERROR (and MANIFEST_INVALID, WEBHOOK_PAYLOAD_INVALID): what failed and why"
    )


def generate() -> str:
    with _settings_the_functions_need():
        return _generate()


def _generate() -> str:
    from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    merge = OpenAPIMerge(
        title="Conduit API",
        version="1.0.0",
        description=(
            "The API behind Conduit. Errors always have the body "
            '{"error", "code", "statusCode"} (plus "details" for VALIDATION_ERROR). Each operation lists the '
            "error codes it can answer under their HTTP status (also as `x-error-codes`), except that 422s, and the "
            "401s of operations that take no bearer credential (a password, a refresh token, a webhook secret), are "
            "listed under `default` with their status. "
            "A streamed answer (text/event-stream) is described event by event, as OpenAPI 3.2 describes "
            "server-sent events: each event's `data` is JSON, whose schema is its `contentSchema`."
        ),
        security_schemes={"bearerAuth": HTTPBearer(bearerFormat="JWT")},
        on_conflict="error",
    )
    # discover() only recognises `app = SomeResolver(...)`; ours come from make_resolver().
    for handler_file in sorted((ROOT / "functions").glob("*/app.py")):
        if "\napp = " in handler_file.read_text():  # Function-URL-only and event-driven functions have none
            merge.add_file(handler_file, resolver_name="app")
    for schema in _function_url_schemas():
        merge.add_schema(schema)
    _check_component_names()
    document = json.loads(merge.get_openapi_json_schema())
    _document_stream_events(document)
    _document_errors(document, _public_operations())
    document["tags"] = _ordered_tags(document)
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


@contextmanager
def _settings_the_functions_need() -> Iterator[None]:
    """Importing a handler checks the settings its function needs (Settings.require, at cold start);
    the document needs none of their values, so placeholders stand in while the handlers load."""
    from conduit.platform.settings import SCHEDULES_NEED, Settings, get_settings

    names = [str(Settings.model_fields[field].validation_alias) for field in SCHEDULES_NEED]
    with mock.patch.dict(os.environ, {name: os.environ.get(name) or "unset-while-documenting" for name in names}):
        get_settings.cache_clear()
        try:
            yield
        finally:
            get_settings.cache_clear()

# Swagger UI (/docs) shows tags in the order of the document's `tags`: a newcomer starts with Auth.
TAG_ORDER = {
    "Auth": "Register, accept the terms, log in, refresh; every other route needs the access token",
    "Vault": "Sites: manifests, tokens, OAuth",
    "Chat": "Sessions and the chat exchange (streamed or not)",
    "Agents": "Agents, their triggers (manual, webhook, scheduled) and starting runs",
    "Runs": "Runs of agents, their steps, cancelling",
    "API keys": "Bearer keys for server-to-server clients",
    "Workspaces": "Team workspaces and their members",
    "Billing": "Credits, the ledger, cards, packs, plans (Stripe)",
    "Admin": "Admins only",
    "Platform": "Health",
}


def _ordered_tags(document: dict) -> list[dict[str, str]]:
    used = {tag for item in document.get("paths", {}).values() for operation in item.values() for tag in operation.get("tags", [])}
    ordered = [name for name in TAG_ORDER if name in used] + sorted(used - TAG_ORDER.keys())
    return [{"name": name, "description": TAG_ORDER[name]} if name in TAG_ORDER else {"name": name} for name in ordered]


def _function_modules() -> list[tuple[Any, Any]]:
    """(spec, handler module) of every function of template.yaml."""
    from shared.local.template import Template
    from shared.local.workers import load_module

    return [(spec, load_module(spec)) for spec in Template().functions()]


def _function_url_schemas() -> list[dict]:
    """Routes served on a function's Function URL (its `url_app`), placed where the API serves them:
    under the function's mount prefix (template Metadata.LocalUrlPrefix, e.g. POST /chat)."""
    schemas = []
    for spec, module in _function_modules():
        if not spec.url_prefix:
            continue
        schema = json.loads(module.url_app.get_openapi_json_schema())
        prefix = spec.url_prefix.rstrip("/")
        schema["paths"] = {(prefix + path).rstrip("/") or "/": item for path, item in schema.get("paths", {}).items()}
        schemas.append(schema)
    return schemas


def _public_operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) of routes marked @public (they take no token), with their marker."""
    public = {}
    for spec, module in _function_modules():
        for name, prefix in (("app", ""), ("url_app", (spec.url_prefix or "").rstrip("/"))):
            resolver = getattr(module, name, None)
            for route in [*getattr(resolver, "_static_routes", []), *getattr(resolver, "_dynamic_routes", [])]:
                marker = getattr(route.func, "__conduit_public__", None)
                if marker is not None:
                    public[(route.method.lower(), (prefix + route.openapi_path).rstrip("/") or "/")] = marker
    return public


def _resolver_schemas() -> list[tuple[str, dict[str, Any]]]:
    """(name, OpenAPI schema) of every resolver the document is made of."""
    found = []
    for spec, module in _function_modules():
        for name in ("app", "url_app"):
            resolver = getattr(module, name, None)
            if resolver is not None and hasattr(resolver, "get_openapi_json_schema"):
                found.append((f"{spec.logical_id}.{name}", json.loads(resolver.get_openapi_json_schema())))
    return found


def _check_component_names() -> None:
    """OpenAPIMerge keeps the last of two components with one name: two different models of one name in two
    functions would silently document one of them. Refuse that instead."""
    seen: dict[str, tuple[str, Any]] = {}
    for source, schema in _resolver_schemas():
        for name, component in schema.get("components", {}).get("schemas", {}).items():
            if name in seen and seen[name][1] != component:
                raise ValueError(f"two different schemas named {name}: {seen[name][0]} and {source}; rename one model")
            seen.setdefault(name, (source, component))


# --- server-sent events -------------------------------------------------------------------------

REF = "#/components/schemas/{model}"
EVENT_NOTES = {  # otherwise the first paragraph of the data model's docstring
    "done": "The last event of an exchange that succeeded: the answer, as without streaming.",
    "error": "How an exchange that failed ends: an error body, whose statusCode says what it was (sent before any "
    "other event, its status is the response's too).",
}


def _add_components(schemas: dict[str, Any], model: Any) -> str:
    """A model and what it refers to, as components; a name taken by another schema is refused."""
    schema = model.model_json_schema(ref_template=REF)
    for name, component in {**schema.pop("$defs", {}), model.__name__: schema}.items():
        if schemas.setdefault(name, component) != component:
            raise ValueError(f"two different schemas named {name}; rename one model")
    return REF.format(model=model.__name__)


def _document_stream_events(document: dict) -> None:
    """POST /chat's events (conduit.chat.exchange.STREAM_EVENTS, and `error`: an error body), as OpenAPI 3.2 describes
    server-sent events: each event an object of its name (`event`) and its `data`, JSON text whose schema is
    `contentSchema`. ChatStreamEvent is any of them. Made here: nothing needs them at run time."""
    from conduit.chat.exchange import STREAM_EVENTS

    schemas = document["components"]["schemas"]
    frames = {}
    for event, model in {**STREAM_EVENTS, "error": ErrorBody}.items():
        name = "".join(part.title() for part in event.split("_")) + "Frame"
        summary = EVENT_NOTES.get(event) or (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        schemas[name] = {
            "title": name,
            "description": f"`event: {event}`. {summary}",
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {"const": event, "type": "string"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": _add_components(schemas, model)},
                },
            },
        }
        frames[event] = REF.format(model=name)
    schemas["ChatStreamEvent"] = {
        "title": "ChatStreamEvent",
        "description": "One server-sent event of a streamed exchange (`event: <name>`, then `data: <JSON>`), each "
        "written as it happens: text (the model's words, piece by piece from a streaming provider), tool_use and "
        "tool_result (each tool call), then done, or error. A failure before the first event is the only event, "
        "with the error's status as the response's.",
        "oneOf": [{"$ref": ref} for ref in frames.values()],
        "discriminator": {"propertyName": "event", "mapping": frames},
    }


# --- errors (API.md §1): one body; each operation names the codes it answers --------------------

# What the gate answers (conduit.http.api: the body's size and type, validation; conduit.identity.gate.gate:
# authentication, the rate limit, terms, admin, API keys), by the kind of route. Routes declare
# their own codes (conduit.http.routes.answers); these are added to them.
BODY_CHECKS = (
    "VALIDATION_ERROR",
    "A parameter or the body failed validation (`details` name the fields): "
    "a body over 256 KiB, not JSON, an unknown field, a value of the wrong type",
)
BEARER = (
    ("UNAUTHORIZED", "No Authorization header"),
    ("INVALID_TOKEN", "A malformed or forged token, or one for another audience"),
    ("TOKEN_EXPIRED", "An expired access token or API key"),
    ("TOKEN_REVOKED", "A logged-out login, a revoked API key, or a disabled user"),
    ("RATE_LIMITED", "Over the account's requests per minute (Retry-After says when to retry)"),
)
TERMS = ("TERMS_NOT_ACCEPTED", "Accept the current terms first (POST /auth/accept-terms)")
ADMIN = ("ADMIN_REQUIRED", "Admins only")
KEYLESS = ("PERMISSION_DENIED", "An API key cannot manage API keys or sign out")
PER_IP = ("RATE_LIMITED", "Over the unauthenticated requests per minute of this client address (Retry-After)")
FAULT = ("INTERNAL_ERROR", "An unexpected fault (never caused by the request); nothing is said about it")


def _gate_codes(path: str, marker: dict[str, Any] | None) -> list[tuple[str, str]]:
    from conduit.identity.gate import KEYLESS_ROUTES

    codes = [BODY_CHECKS]
    if marker is None:
        codes += BEARER
        if not path.startswith("/auth/"):
            codes.append(TERMS)
        if path.startswith("/admin/"):
            codes.append(ADMIN)
        if any(path == route or path.startswith(route + "/") for route in KEYLESS_ROUTES):
            codes.append(KEYLESS)
    elif marker.get("limit_by_ip"):
        codes.append(PER_IP)
    codes.append(FAULT)
    return codes


def _add_code(answer: dict[str, Any], code: str, note: str) -> None:
    """One more code in an error answer's `x-error-codes` and description, unless the route named it already."""
    from conduit.http.routes import error_line

    known = answer.setdefault("x-error-codes", [])
    if code not in known:
        known.append(code)
        answer["description"] = "\n".join(filter(None, (answer.get("description"), error_line(code, note))))


def _document_errors(document: dict, public: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Every error has the same body (API.md §1), and each operation names the codes it can answer, grouped
    by status: its own (conduit.http.routes.answers) and its gate's. Powertools documents its own 422 and 500
    shapes instead; they are never sent.

    Two statuses are never keys of an operation's responses (tests/test_openapi.py holds the document to
    it): 422, which readers of this document would take for Powertools' validation shape, and 401 on the
    routes that take no bearer credential (@public), where 401 would read as "send a token". The codes an
    operation answers with those statuses (MANIFEST_INVALID, WEBHOOK_PAYLOAD_INVALID; a wrong password, a
    spent refresh token, a webhook secret) are listed under `default`, each with its status."""
    from conduit.platform.errors import CATALOGUE

    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    body = {"application/json": {"schema": {"$ref": _add_components(schemas, ErrorBody)}}}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            for powertools in ("422", "500"):  # HTTPValidationError, "Response Validation Error"
                if "x-error-codes" not in responses.get(powertools, {"x-error-codes": ()}):
                    del responses[powertools]
            marker = public.get((method, path))
            for code, note in _gate_codes(path, marker):
                _add_code(responses.setdefault(str(CATALOGUE[code].status), {"content": body}), code, note)
            default: dict[str, Any] = {"description": "Any other error, with the same body", "content": body}
            unkeyed = [
                status for status in ("401", "422") if status in responses and (status == "422" or marker is not None)
            ]
            if unkeyed:
                moved = [responses.pop(status) | {"status": status} for status in unkeyed]
                lines = [
                    f"- {answer['status']} {line.removeprefix('- ')}"
                    for answer in moved
                    for line in answer["description"].splitlines()
                ]
                default["description"] = "\n".join([default["description"] + "; among them:", *lines])
                default["x-error-codes"] = [code for answer in moved for code in answer["x-error-codes"]]
            responses["default"] = default
            _describe_success(responses)
            if marker is None:
                operation["security"] = [{"bearerAuth": []}]
            operation["responses"] = dict(sorted(responses.items()))


def _describe_success(responses: dict[str, Any]) -> None:
    """A 204 has no body. A streamed operation (text/event-stream) ends a failure before its first event
    with the error as that event, so its errors come in both media types."""
    stream = None
    for status, answer in responses.items():
        if status.startswith("2"):
            if status == "204" or not answer.get("content"):
                answer.pop("content", None)
            elif "text/event-stream" in answer["content"]:
                stream = {"schema": {"$ref": "#/components/schemas/ErrorFrame"}}
    if stream is not None:
        for status, answer in responses.items():
            if not status.startswith("2"):
                answer["content"] = {**answer["content"], "text/event-stream": stream}


def main(argv: list[str]) -> int:
    document = generate()
    if "--check" in argv:
        if not DOCUMENT_PATH.exists() or DOCUMENT_PATH.read_text() != document:
            print(f"{DOCUMENT_PATH.relative_to(ROOT)} is stale: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    DOCUMENT_PATH.write_text(document)
    print(f"wrote {DOCUMENT_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
