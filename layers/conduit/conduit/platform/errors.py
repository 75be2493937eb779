"""The one error type of the API and the catalogue of its codes.

Every failure a client can see is a `ConduitError(code)`. The resolver turns it
into `{"error", "code", "statusCode"}` (plus `details` for validation errors),
so handlers and domain code never build error bodies themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    status: int
    message: str


# The original catalogue (spec/error-codes.txt) plus the extension codes API.md
# allows (EMAIL_IN_USE, INTERNAL_ERROR), SITE_UNAVAILABLE for unreachable sites and
# BILLING_UNAVAILABLE when Stripe is not configured, unreachable, or an event is mid-flight,
# AGENT_INACTIVE for a run of an agent whose isActive is false, IDEMPOTENCY_KEY_REUSED for a
# key sent again with a different request (the first outcome would otherwise come back silently).
CATALOGUE: dict[str, CatalogueEntry] = {
    # Authentication
    "UNAUTHORIZED": CatalogueEntry(401, "No valid authentication token provided"),
    "TOKEN_EXPIRED": CatalogueEntry(401, "The access token has expired"),
    "TOKEN_REVOKED": CatalogueEntry(401, "The access token has been revoked"),
    "INVALID_TOKEN": CatalogueEntry(401, "The token is malformed or invalid"),
    "ADMIN_REQUIRED": CatalogueEntry(403, "The endpoint requires admin privileges"),
    "TERMS_NOT_ACCEPTED": CatalogueEntry(403, "Accept the terms of service first (POST /auth/accept-terms)"),
    # Rate limiting
    "RATE_LIMITED": CatalogueEntry(429, "Too many requests in the time window"),
    "OUTGOING_RATE_LIMITED": CatalogueEntry(429, "Too many outgoing tool calls to this site"),
    # Credits and billing
    "NO_CREDITS": CatalogueEntry(402, "Insufficient credit balance for the requested operation"),
    "NO_PAYMENT_METHOD": CatalogueEntry(402, "No payment method on file"),
    "PAYMENT_FAILED": CatalogueEntry(402, "The payment charge was declined"),
    "SUBSCRIPTION_PAST_DUE": CatalogueEntry(402, "Subscription payment is overdue"),
    # Tiers and access
    "TIER_REQUIRED": CatalogueEntry(403, "The feature requires a higher subscription tier"),
    "FEATURE_LIMIT_REACHED": CatalogueEntry(403, "You have reached the limit for this feature on your tier"),
    "WORKSPACE_REQUIRED": CatalogueEntry(403, "The operation requires a Team plan"),
    # Sessions
    "INVALID_SESSION": CatalogueEntry(400, "The session token is invalid"),
    "SESSION_NOT_FOUND": CatalogueEntry(404, "No session found with the provided token"),
    "SESSION_EXPIRED": CatalogueEntry(410, "The session has expired"),
    # Chat
    "CHAT_TIMEOUT": CatalogueEntry(504, "The AI response took too long"),
    "STREAM_ABORTED": CatalogueEntry(499, "The client disconnected during streaming"),
    "MODEL_ERROR": CatalogueEntry(502, "The AI provider returned an error"),
    "TOOL_EXECUTION_ERROR": CatalogueEntry(502, "A tool call to an external site failed"),
    "SITE_UNAVAILABLE": CatalogueEntry(503, "The site could not be reached"),
    # Vault
    "TOKEN_EXISTS": CatalogueEntry(409, "A token for this site already exists in the vault"),
    "VAULT_LIMIT_REACHED": CatalogueEntry(403, "Maximum sites in vault reached for your tier"),
    "MANIFEST_NOT_FOUND": CatalogueEntry(404, "Could not fetch the manifest from the site URL"),
    "MANIFEST_INVALID": CatalogueEntry(422, "The manifest is malformed or missing required fields"),
    # Agents
    "AGENT_NOT_FOUND": CatalogueEntry(404, "No agent found with the provided ID"),
    "AGENT_LIMIT_REACHED": CatalogueEntry(403, "Maximum agents reached for your tier"),
    "RUN_NOT_FOUND": CatalogueEntry(404, "No run found with the provided ID"),
    "RUN_NOT_CANCELLABLE": CatalogueEntry(400, "The run is not in a cancellable state"),
    "AGENT_ALREADY_RUNNING": CatalogueEntry(409, "The agent already has an active run"),
    # Webhooks
    "WEBHOOK_SECRET_INVALID": CatalogueEntry(401, "The X-Webhook-Secret header does not match"),
    "WEBHOOK_PAYLOAD_INVALID": CatalogueEntry(422, "The request body does not match the webhook schema"),
    # Validation
    "VALIDATION_ERROR": CatalogueEntry(400, "The request failed validation"),
    "INVALID_URL": CatalogueEntry(400, "A provided URL is not valid"),
    "NOT_FOUND": CatalogueEntry(404, "The requested resource does not exist"),
    # Workspaces
    "WORKSPACE_NOT_FOUND": CatalogueEntry(404, "No workspace found with the provided ID"),
    "PERMISSION_DENIED": CatalogueEntry(403, "You do not have the required permission in this workspace"),
    "MEMBER_NOT_FOUND": CatalogueEntry(404, "The user is not a member of this workspace"),
    "ROLE_CHANGE_FORBIDDEN": CatalogueEntry(403, "Cannot change or remove the workspace owner"),
    # Extensions
    "EMAIL_IN_USE": CatalogueEntry(409, "An account with this email already exists"),
    "INTERNAL_ERROR": CatalogueEntry(500, "Internal server error"),
    "BILLING_UNAVAILABLE": CatalogueEntry(503, "Billing is unavailable right now"),
    "AGENT_INACTIVE": CatalogueEntry(409, "The agent is inactive; set isActive to run it"),
    "IDEMPOTENCY_KEY_REUSED": CatalogueEntry(409, "The Idempotency-Key was already used for a different request"),
}


class ConduitError(Exception):
    """A failure with a catalogue code; the only error type handlers raise."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        entry = CATALOGUE.get(code)
        if entry is None:  # a programming error, caught by the catalogue tests
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.status = entry.status
        self.message = message or entry.message
        self.details = details
        self.headers = headers or {}
        super().__init__(f"{code}: {self.message}")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code, "statusCode": self.status}
        if self.details is not None:
            body["details"] = self.details
        return body


def validation_error(field: str, message: str) -> ConduitError:
    """A VALIDATION_ERROR naming one field, for checks pydantic cannot express."""
    return ConduitError("VALIDATION_ERROR", f"Invalid {field}: {message}", details=[{"field": field, "message": message}])
