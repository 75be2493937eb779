"""Stripe webhooks, on a Lambda Function URL of their own (API.md §5; locally POST /stripe/webhook).

No bearer token: Stripe authenticates each delivery with the `Stripe-Signature` header,
checked on the raw body (conduit.billing.stripe_events). Answers 200 once the event is applied,
or was already; 400 for a bad signature or body, and nothing changes.
"""

from __future__ import annotations

from conduit.billing import stripe_events
from conduit.http.api import handler_for, make_resolver
from conduit.identity.gate import public
from conduit.http.routes import answers
from conduit.billing.stripe_events import EventReceived

url_app = make_resolver("function_url")  # mounted at /stripe/webhook


@url_app.post(
    "/",
    tags=["Billing"],
    summary="Stripe webhook (served at POST /stripe/webhook; Stripe-Signature required)",
    description="For Stripe only: each event id is applied at most once; unknown event types and accounts are "
    "acknowledged and change nothing.",
    **answers(
        (
            "VALIDATION_ERROR",
            "A missing, forged or stale Stripe-Signature, or a body that is not a Stripe event; nothing changes",
        ),
        (
            "BILLING_UNAVAILABLE",
            "Webhooks are not configured on this server, or the event is being applied by another delivery",
        ),
        description="The event is applied, or was already",
    ),
)
@public()
def stripe_webhook() -> EventReceived:
    event = url_app.current_event
    payload = event.decoded_body or ""  # the raw body, exactly as signed
    return stripe_events.handle(payload, event.get_header_value("Stripe-Signature"), url_app.lambda_context)


lambda_handler = handler_for(url_app)
