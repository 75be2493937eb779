"""Stripe on loopback, in its wire format, for the real stripe library to talk to; and signed webhooks.

`FakeStripe` is a real HTTP server on 127.0.0.1 answering the v1 endpoints Conduit calls
(customers, setup intents, payment intents, subscriptions) with JSON objects shaped as
Stripe returns them, form-encoded requests parsed as Stripe parses them, and Stripe's
error bodies (`{"error": {"type": "card_error", "code": "card_declined", ...}}`, 402).
It honours `Idempotency-Key` as Stripe does: the same key with the same parameters
replays the first response (`Idempotent-Replayed: true`); with other parameters it is
an `idempotency_error`. Every request is recorded.

Cards are Stripe's test payment methods: `pm_card_visa` succeeds, `pm_card_chargeDeclined`
is declined (`card_declined`), `pm_card_authenticationRequired` needs the customer
(`authentication_required`).

`signed(event, secret)` signs a webhook body with Stripe's scheme
(`t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">`) through stripe's own helper.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

API_KEY = "sk_test_conduit"
WEBHOOK_SECRET = "whsec_conduit_tests"

SUCCEEDS, DECLINED, NEEDS_AUTHENTICATION = "pm_card_visa", "pm_card_chargeDeclined", "pm_card_authenticationRequired"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, Any]
    status: int
    replayed: bool


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def parse_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding (`metadata[accountId]=…`, `items[0][price]=…`) back into objects."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def lists(node: Any) -> Any:
        if isinstance(node, dict):
            if node and all(key.isdigit() for key in node):
                return [lists(node[key]) for key in sorted(node, key=int)]
            return {key: lists(value) for key, value in node.items()}
        return node

    return lists(root)


def _error(status: int, type_: str, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"type": type_, "message": message, **extra}}


# --- objects, as Stripe returns them ------------------------------------------------------------


def customer_object(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _new_id("cus"),
        "object": "customer",
        "created": int(time.time()),
        "email": params.get("email"),
        "name": params.get("name"),
        "invoice_settings": {"default_payment_method": None},
        "livemode": False,
        "metadata": params.get("metadata", {}),
    }


def setup_intent_object(params: dict[str, Any], **changes: Any) -> dict[str, Any]:
    intent_id = _new_id("seti")
    return {
        "id": intent_id,
        "object": "setup_intent",
        "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
        "created": int(time.time()),
        "customer": params.get("customer"),
        "livemode": False,
        "metadata": params.get("metadata", {}),
        "payment_method": None,
        "payment_method_types": params.get("payment_method_types", ["card"]),
        "status": "requires_payment_method",
        "usage": params.get("usage", "off_session"),
        **changes,
    }


def payment_intent_object(params: dict[str, Any], **changes: Any) -> dict[str, Any]:
    intent_id = _new_id("pi")
    amount = int(params.get("amount", 0))
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
        "confirmation_method": "automatic",
        "created": int(time.time()),
        "currency": params.get("currency", "usd"),
        "customer": params.get("customer"),
        "description": params.get("description"),
        "last_payment_error": None,
        "latest_charge": _new_id("ch"),
        "livemode": False,
        "metadata": params.get("metadata", {}),
        "payment_method": params.get("payment_method"),
        "payment_method_types": ["card"],
        "status": "succeeded",
        **changes,
    }


def subscription_object(params: dict[str, Any], **changes: Any) -> dict[str, Any]:
    subscription_id = _new_id("sub")
    price = (params.get("items") or [{}])[0].get("price", "price_unknown")
    now = int(time.time())
    return {
        "id": subscription_id,
        "object": "subscription",
        "cancel_at_period_end": False,
        "created": now,
        "customer": params.get("customer"),
        "default_payment_method": params.get("default_payment_method"),
        "items": {
            "object": "list",
            "data": [{"id": _new_id("si"), "object": "subscription_item", "price": {"id": price, "object": "price"}}],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={subscription_id}",
        },
        "livemode": False,
        "metadata": params.get("metadata", {}),
        "status": "active",
        **changes,
    }


def invoice_object(customer: str, subscription: str, billing_reason: str, metadata: dict[str, str]) -> dict[str, Any]:
    """An invoice as API versions since 2025 send it (subscription under parent.subscription_details)."""
    return {
        "id": _new_id("in"),
        "object": "invoice",
        "amount_paid": 2000,
        "billing_reason": billing_reason,
        "customer": customer,
        "livemode": False,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"metadata": metadata, "subscription": subscription},
        },
        "status": "paid",
    }


def _card_error(code: str, message: str, intent: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    error = {"code": code, "message": message, "type": "card_error", "doc_url": f"https://stripe.com/docs/error-codes/{code}"}
    if code == "card_declined":
        error["decline_code"] = "generic_decline"
    intent.update(status="requires_payment_method", last_payment_error=dict(error))
    return _error(402, "card_error", message, **{k: v for k, v in error.items() if k not in ("type", "message")}, payment_intent=intent)


class FakeStripe:
    """Stripe's v1 API on 127.0.0.1:<free port>, with idempotency and recorded requests."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self.customers: dict[str, dict[str, Any]] = {}
        self.setup_intents: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self._replies: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer()

            def do_POST(self) -> None:  # noqa: N802
                self._answer()

            def do_DELETE(self) -> None:  # noqa: N802
                self._answer()

            def _answer(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                url = urlsplit(self.path)
                params = parse_form(raw if self.command == "POST" else url.query)
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, body, replayed = fake.handle(self.command, url.path, headers, params)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", _new_id("req"))
                if replayed:
                    self.send_header("Idempotent-Replayed", "true")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-stripe").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        return [request for request in list(self.requests) if request.method == method and request.path == path]

    def handle(self, method: str, path: str, headers: dict[str, str], params: dict[str, Any]) -> tuple[int, dict, bool]:
        # One request at a time: a key's second use always sees the first one's reply, as
        # Stripe's idempotency layer guarantees (it answers 409 to a concurrent one instead).
        with self._lock:
            if headers.get("authorization") != f"Bearer {self.api_key}":
                status, body = _error(401, "invalid_request_error", "Invalid API Key provided")
                self.requests.append(Recorded(method, path, headers, params, status, False))
                return status, body, False
            key = headers.get("idempotency-key") if method == "POST" else None
            replayed = False
            if key is not None and key in self._replies:
                first_params, status, body = self._replies[key]
                if first_params != params:
                    status, body = _error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                    )
                else:
                    replayed = True
            else:
                status, body = self._route(method, path, params)
                if key is not None:
                    self._replies[key] = (params, status, body)
            self.requests.append(Recorded(method, path, headers, params, status, replayed))
            return status, body, replayed

    def _route(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/customers":
            customer = customer_object(params)
            self.customers[customer["id"]] = customer
            return 200, customer
        if method == "POST" and path == "/v1/setup_intents":
            if params.get("customer") not in self.customers:
                return _error(400, "invalid_request_error", "No such customer", param="customer", code="resource_missing")
            intent = setup_intent_object(params)
            self.setup_intents[intent["id"]] = intent
            return 200, intent
        if method == "POST" and path == "/v1/payment_intents":
            return self._payment_intent(params)
        if method == "POST" and path == "/v1/subscriptions":
            return self._subscription(params, None)
        if len(parts) == 3 and parts[:2] == ["v1", "subscriptions"]:
            current = self.subscriptions.get(parts[2])
            if current is None:
                return _error(404, "invalid_request_error", f"No such subscription: '{parts[2]}'", code="resource_missing")
            if method == "GET":
                return 200, current
            if method == "POST":
                return self._subscription(params, current)
        return _error(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})")

    def _payment_intent(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if params.get("customer") not in self.customers:
            return _error(400, "invalid_request_error", "No such customer", param="customer", code="resource_missing")
        intent = payment_intent_object(params)
        self.payment_intents[intent["id"]] = intent
        method = params.get("payment_method")
        if method == DECLINED:
            return _card_error("card_declined", "Your card was declined.", intent)
        if method == NEEDS_AUTHENTICATION:
            return _card_error(
                "authentication_required",
                "Your card was declined. This transaction requires authentication.",
                intent,
            )
        if method != SUCCEEDS:
            return _error(400, "invalid_request_error", f"No such PaymentMethod: '{method}'", param="payment_method", code="resource_missing")
        return 200, intent

    def _subscription(self, params: dict[str, Any], current: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        method = params.get("default_payment_method") or (current or {}).get("default_payment_method")
        if method == DECLINED:
            return _card_error("card_declined", "Your card was declined.", {})
        if current is None:
            subscription = subscription_object(params)
        else:
            subscription = current
            for name in ("metadata", "default_payment_method"):
                if name in params:
                    subscription[name] = params[name]
            if "cancel_at_period_end" in params:
                subscription["cancel_at_period_end"] = params["cancel_at_period_end"] == "true"
            for item in params.get("items") or []:
                for existing in subscription["items"]["data"]:
                    if existing["id"] == item.get("id"):
                        existing["price"] = {"id": item["price"], "object": "price"}
        self.subscriptions[subscription["id"]] = subscription
        return 200, subscription


# --- webhooks --------------------------------------------------------------------------------


def event(type_: str, data_object: dict[str, Any], *, created: int | None = None, **data: Any) -> dict[str, Any]:
    """A webhook event as Stripe sends it (snapshot payload)."""
    return {
        "id": _new_id("evt"),
        "object": "event",
        "api_version": "2025-06-30.basil",
        "created": int(time.time()) if created is None else created,
        "data": {"object": data_object, **data},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }


def signed(payload: dict[str, Any] | str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[str, dict[str, str]]:
    """(body, headers) of a delivery: Stripe-Signature `t=<ts>,v1=<HMAC-SHA256 of "<ts>.<body>">`."""
    body = payload if isinstance(payload, str) else json.dumps(payload)
    signature = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body, {"Stripe-Signature": signature, "Content-Type": "application/json; charset=utf-8"}
