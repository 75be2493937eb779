"""Generate the one OpenAPI document of the API from every function's resolver.

    python -m shared.openapi           # write functions/platform/openapi.json
    python -m shared.openapi --check   # exit 1 if the committed document is stale

Powertools' OpenAPIMerge imports each functions/*/app.py and merges the
schemas its routes and pydantic models declare: the document cannot drift
from the code, and a test runs --check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "conduit"
DOCUMENT_PATH = ROOT / "functions" / "platform" / "openapi.json"


def generate() -> str:
    if str(LAYER) not in sys.path:
        sys.path.insert(0, str(LAYER))
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
        merge.add_file(handler_file, resolver_name="app")
    for schema in _function_url_schemas():
        merge.add_schema(schema)
    document = json.loads(merge.get_openapi_json_schema())
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _function_url_schemas() -> list[dict]:
    """Routes served on a function's Function URL (its `url_app`), placed where the API serves them:
    under the function's mount prefix (template Metadata.LocalUrlPrefix, e.g. POST /chat)."""
    from shared.local.template import Template
    from shared.local.workers import load_handler

    schemas = []
    for spec in Template().functions():
        if not spec.url_prefix:
            continue
        load_handler(spec)
        url_app = sys.modules[f"conduit_function_{spec.logical_id}"].url_app
        schema = json.loads(url_app.get_openapi_json_schema())
        prefix = spec.url_prefix.rstrip("/")
        schema["paths"] = {(prefix + path).rstrip("/") or "/": item for path, item in schema.get("paths", {}).items()}
        schemas.append(schema)
    return schemas


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
