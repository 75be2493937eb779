"""The resolver factory every function uses, and the one place errors become responses.

    app = make_resolver()                 # API Gateway REST (proxy) functions
    app = make_resolver("function_url")   # Lambda Function URL functions
    lambda_handler = handler_for(app)

Handlers raise `ConduitError`; pydantic validation failures, unknown routes,
oversized bodies and uncaught faults are turned into the same error body here.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Literal

from aws_lambda_powertools.event_handler import (
    APIGatewayRestResolver,
    LambdaFunctionUrlResolver,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver, ResponseBuilder, Route
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths

from conduit.errors import ConduitError
from conduit.observability import logger, metrics, tracer

MAX_BODY_BYTES = 256 * 1024  # API.md §1


def error_response(error: ConduitError) -> Response:
    return Response(
        status_code=error.status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(error.body()),
        headers=error.headers,
    )


def _body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return len(base64.b64decode(body, validate=False))
        except (binascii.Error, ValueError):
            return len(body)
    return len(body.encode("utf-8", errors="surrogatepass"))


class _ConduitResolverMixin:
    """Refuses oversized bodies before routing, so validation never parses them."""

    def _resolve(self) -> ResponseBuilder:
        resolver: ApiGatewayResolver = self  # type: ignore[assignment]
        if _body_size(resolver.current_event.raw_event) <= MAX_BODY_BYTES:
            return super()._resolve()  # type: ignore[misc]

        def body_too_large():  # noqa: ANN202 - Powertools cannot build a schema from `-> Response`
            raise ConduitError(
                "VALIDATION_ERROR",
                f"Request body is larger than {MAX_BODY_BYTES} bytes",
                details=[{"field": "body", "message": f"must be at most {MAX_BODY_BYTES} bytes"}],
            )

        method = resolver.current_event.http_method.upper()
        path = resolver.current_event.path
        route = Route(
            rule=resolver._compile_regex(r".*"),
            method=method,
            path=path,
            func=body_too_large,
            cors=resolver._cors_enabled,
            compress=False,
        )
        resolver.append_context(_route=route, _path=path)
        return resolver._call_route(route, {})


class ConduitRestResolver(_ConduitResolverMixin, APIGatewayRestResolver):
    pass


class ConduitFunctionUrlResolver(_ConduitResolverMixin, LambdaFunctionUrlResolver):
    pass


def _field_of(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ())]
    if location and location[0] == "body":
        location = location[1:]
    return ".".join(location) or "body"


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    details = []
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            details.append({"field": "body", "message": f"Malformed JSON: {reason}"})
        else:
            details.append({"field": _field_of(error), "message": str(error.get("msg", "invalid value"))})
    return details


def _register_error_handlers(app: ApiGatewayResolver) -> None:
    @app.exception_handler(ConduitError)
    def handle_conduit_error(error: ConduitError) -> Response:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    def handle_validation_error(error: RequestValidationError) -> Response:
        details = validation_details(list(error.errors()))
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return error_response(ConduitError("VALIDATION_ERROR", f"Invalid request: {summary}", details=details))

    @app.exception_handler(UnicodeDecodeError)
    def handle_undecodable_body(_: UnicodeDecodeError) -> Response:
        return error_response(
            ConduitError(
                "VALIDATION_ERROR",
                "Request body must be UTF-8 encoded JSON",
                details=[{"field": "body", "message": "must be UTF-8 encoded JSON"}],
            )
        )

    @app.not_found
    def handle_not_found(_: NotFoundError) -> Response:
        return error_response(ConduitError("NOT_FOUND", "Route not found"))

    @app.exception_handler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        # Internals go to the log, never to the client.
        logger.exception("Unhandled error", extra={"error_type": type(error).__name__})
        return error_response(ConduitError("INTERNAL_ERROR"))


def make_resolver(kind: Literal["rest", "function_url"] = "rest") -> ApiGatewayResolver:
    """The resolver for one function: validation on, every error handler registered."""
    resolver_class = ConduitRestResolver if kind == "rest" else ConduitFunctionUrlResolver
    app = resolver_class(enable_validation=True)
    _register_error_handlers(app)
    return app


_CORRELATION_PATHS = {
    ConduitRestResolver: correlation_paths.API_GATEWAY_REST,
    ConduitFunctionUrlResolver: correlation_paths.LAMBDA_FUNCTION_URL,
}


def handler_for(app: ApiGatewayResolver):
    """The Lambda entry point for a resolver, with logging, tracing and metrics."""

    @logger.inject_lambda_context(correlation_id_path=_CORRELATION_PATHS[type(app)], clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return app.resolve(event, context)

    return lambda_handler
