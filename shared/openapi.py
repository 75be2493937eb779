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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "conduit"
DOCUMENT_PATH = ROOT / "functions" / "platform" / "openapi.json"


def generate() -> str:
    if str(LAYER) not in sys.path:
        sys.path.insert(0, str(LAYER))
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
            '{"error", "code", "statusCode"} (plus "details" for VALIDATION_ERROR).'
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
    document = json.loads(merge.get_openapi_json_schema())
    _document_errors(document, _public_operations())
    document["tags"] = _ordered_tags(document)
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


@contextmanager
def _settings_the_functions_need() -> Iterator[None]:
    """Importing a handler checks the settings its function needs (Settings.require, at cold start);
    the document needs none of their values, so placeholders stand in while the handlers load."""
    from conduit.settings import SCHEDULES_NEED, Settings, get_settings

    names = [str(Settings.model_fields[field].validation_alias) for field in SCHEDULES_NEED]
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: value or "unset-while-documenting" for name, value in saved.items()})
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
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


ERROR_BODY = {
    "type": "object",
    "required": ["error", "code", "statusCode"],
    "properties": {
        "error": {"type": "string", "description": "Human-readable description"},
        "code": {"type": "string", "description": "Catalogue code, e.g. VALIDATION_ERROR"},
        "statusCode": {"type": "integer", "description": "Equal to the HTTP status"},
        "details": {
            "type": "array",
            "description": "VALIDATION_ERROR only: which fields failed and why",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
ERROR_RESPONSES = {
    "400": "VALIDATION_ERROR (details name the fields), or another 400 code of the operation",
    "401": "UNAUTHORIZED, INVALID_TOKEN, TOKEN_EXPIRED or TOKEN_REVOKED",
    "403": "TERMS_NOT_ACCEPTED, ADMIN_REQUIRED, PERMISSION_DENIED or a tier code",
    "429": "RATE_LIMITED (with Retry-After)",
    "default": "Any other error: the same body, with the operation's code and status",
}


def _public_operations() -> set[tuple[str, str]]:
    """(method, path) of routes marked @public: they take no token."""
    public = set()
    for spec, module in _function_modules():
        for name, prefix in (("app", ""), ("url_app", (spec.url_prefix or "").rstrip("/"))):
            resolver = getattr(module, name, None)
            for route in [*getattr(resolver, "_static_routes", []), *getattr(resolver, "_dynamic_routes", [])]:
                if getattr(route.func, "__conduit_public__", None) is not None:
                    public.add((route.method.lower(), (prefix + route.openapi_path).rstrip("/") or "/"))
    return public


def _document_errors(document: dict, public: set[tuple[str, str]]) -> None:
    """Every error has the same body (API.md §1); Powertools documents its own 422 shape instead."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    schemas["ErrorBody"] = ERROR_BODY
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            authenticated = (method, path) not in public
            codes = ["400", "401", "403", "429", "default"] if authenticated else ["400", "429", "default"]
            for code in codes:
                responses[code] = {"description": ERROR_RESPONSES[code], "content": body}
            if authenticated:
                operation["security"] = [{"bearerAuth": []}]


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
