"""The resolver factory every function uses, and the one place errors become responses.

    app = make_resolver()                 # API Gateway REST (proxy) functions
    app = make_resolver("function_url")   # Lambda Function URL functions
    lambda_handler = handler_for(app)

Handlers raise `ConduitError`; pydantic validation failures, unknown routes,
oversized bodies and uncaught faults are turned into the same error body here.
A route's return annotation (a model of conduit.platform.views) is checked on every answer: a body
that does not match it is a fault of ours, logged and answered 500 INTERNAL_ERROR.
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
from aws_lambda_powertools.event_handler.depends import DependencyResolutionError
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError, ResponseValidationError
from aws_lambda_powertools.logging import correlation_paths

from conduit.platform import safe_json
from conduit.identity.gate import gate
from conduit.platform.errors import ConduitError
from conduit.platform.observability import logger, metrics, tracer
from conduit.platform.settings import get_settings
from conduit.platform.tiers import get_tiers

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


def _source_ip(event: dict[str, Any]) -> str:
    context = event.get("requestContext") or {}
    return (context.get("identity") or {}).get("sourceIp") or (context.get("http") or {}).get("sourceIp") or ""


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


_FORM_BODY = "__conduit_form_body__"
FORM_TYPE = "application/x-www-form-urlencoded"


def form_body(handler: Any) -> Any:
    """Mark a route that reads a form-encoded body itself (the OAuth endpoints: RFC 6749 requires
    `application/x-www-form-urlencoded`, and the consent page's HTML forms send it)."""
    setattr(handler, _FORM_BODY, True)
    return handler


def _refuse_unreadable_body(event: dict[str, Any], accepts_form: bool = False) -> None:
    """JSON in (API.md §1): a body over the cap, or one declared as anything but JSON, is refused
    here; left to Powertools, a form body would be parsed as a form and an unknown type would 500.
    A `form_body` route takes a form too."""
    size = _body_size(event)
    if size > MAX_BODY_BYTES:
        raise ConduitError(
            "VALIDATION_ERROR",
            f"Request body is larger than {MAX_BODY_BYTES} bytes",
            details=[{"field": "body", "message": f"must be at most {MAX_BODY_BYTES} bytes"}],
        )
    headers = event.get("headers") or {}
    header = next((name for name in headers if name.lower() == "content-type"), None)
    if not size or header is None:
        return
    if accepts_form and headers[header].split(";", 1)[0].strip().lower() == FORM_TYPE:
        return
    if not _is_json(headers[header]):
        raise ConduitError(
            "VALIDATION_ERROR",
            f"Request bodies are JSON: send Content-Type: application/json (got {headers[header][:100]!r})",
            details=[{"field": "Content-Type", "message": "must be application/json"}],
        )
    # Media types are case-insensitive; Powertools' parser compares them case-sensitively.
    headers[header] = "application/json"


class _ConduitResolverMixin:
    """Runs the checks that come before validation once a route has matched:
    the body's size and type, then the auth gate (so an anonymous caller gets 401, not a
    description of what its body got wrong). Rate-limit headers are added to
    whatever the route answers."""

    def _call_route(self, route: Route, route_arguments: dict[str, str]) -> ResponseBuilder:
        resolver: ApiGatewayResolver = self  # type: ignore[assignment]
        event = resolver.current_event.raw_event
        is_registered = any(route is known for known in (*resolver._static_routes, *resolver._dynamic_routes))
        try:
            _refuse_unreadable_body(event, getattr(route.func, _FORM_BODY, False))
            if is_registered:
                result = gate(
                    route.func, route.path, dict(resolver.current_event.headers or {}), _source_ip(event), route_arguments
                )
                resolver.append_context(caller=result.caller, rate_window=result.rate_window)
        except Exception as error:  # noqa: BLE001 - handed to the registered exception handlers
            handled = resolver._call_exception_handler(error, route)
            if handled is None:
                raise
            return handled
        builder = super()._call_route(route, route_arguments)  # type: ignore[misc]
        window = resolver.context.get("rate_window")
        if window is not None:
            builder.response.headers.update(window.headers())
        return builder


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

    @app.exception_handler(DependencyResolutionError)
    def handle_dependency_error(error: DependencyResolutionError) -> Response:
        # Powertools wraps whatever a Depends() callable raises; ours are ConduitErrors.
        if isinstance(error.__cause__, ConduitError):
            return error_response(error.__cause__)
        return handle_unexpected(error)

    @app.exception_handler(RequestValidationError)
    def handle_validation_error(error: RequestValidationError) -> Response:
        details = validation_details(list(error.errors()))
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return error_response(ConduitError("VALIDATION_ERROR", f"Invalid request: {summary}", details=details))

    @app.exception_handler(ResponseValidationError)
    def handle_invalid_answer(error: ResponseValidationError) -> Response:
        # Where and what, never the values (an answer can hold a secret shown once).
        problems = [{"loc": list(e.get("loc", ())), "type": e.get("type")} for e in error.errors()]
        logger.error("Answer does not match the route's response model", extra={"problems": problems[:20]})
        return error_response(ConduitError("INTERNAL_ERROR"))

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


def make_resolver(kind: Literal["rest", "function_url"] = "rest", *, needs: tuple[str, ...] = ()) -> ApiGatewayResolver:
    """The resolver for one function: validation on, every error handler registered. `needs`: the
    settings the function cannot work without (conduit.platform.settings.Settings fields)."""
    # Read settings and the tiers file now: a bad or missing value fails the cold start
    # (Lambda reports an init error naming it), not some request later.
    get_settings().require(*needs)
    get_tiers()
    resolver_class = ConduitRestResolver if kind == "rest" else ConduitFunctionUrlResolver
    # Bodies are parsed by safe_json (bounded nesting, no NaN): a refusal is 400 VALIDATION_ERROR, not a 500.
    # An answer that fails its route's response model raises ResponseValidationError (handled below);
    # without the status, Powertools would raise it as a RequestValidationError: a 400 describing our answer.
    app = resolver_class(
        enable_validation=True, json_body_deserializer=safe_json.loads, response_validation_error_http_code=500
    )
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
