"""Stripe webhooks, on a Lambda Function URL of their own (API.md §5; locally POST /stripe/webhook).

No bearer token: Stripe authenticates each delivery with the `Stripe-Signature` header,
checked on the raw body (conduit.stripe_events). Answers 200 once the event is applied,
or was already; 400 for a bad signature or body, and nothing changes.
"""

from __future__ import annotations

from conduit import stripe_events
from conduit.api import handler_for, make_resolver
from conduit.auth import public

url_app = make_resolver("function_url")  # mounted at /stripe/webhook


@url_app.post("/", tags=["Billing"], summary="Stripe webhook (served at POST /stripe/webhook; Stripe-Signature required)")
@public()
def stripe_webhook() -> dict:
    event = url_app.current_event
    payload = event.decoded_body or ""  # the raw body, exactly as signed
    return stripe_events.handle(payload, event.get_header_value("Stripe-Signature"), url_app.lambda_context)


lambda_handler = handler_for(url_app)
