"""Stripe webhooks: signed payloads (valid, forged, stale, duplicated, out of order) applied
in-process against moto, then through the local stack (POST /stripe/webhook): five deliveries
grant once, past due blocks purchases until `active`, bad input changes nothing, and parallel
purchases and deliveries hold exactly."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from conduit.billing import payments as billing

from conduit.billing import credits

from conduit.billing import stripe_events
from conduit.platform.errors import ConduitError
from conduit.repositories.accounts import Account, AccountsRepository
from conduit.repositories.base import Repository
from conduit.repositories.billing import BillingRepository
from shared.local.stack import LocalStack
from shared.local.workers import LocalLambdaContext

from .helpers import assert_error, bearer, open_account, register, signed_up
from .stripe_server import DECLINED, SUCCEEDS, event, invoice_object, payment_intent_object, signed, subscription_object


def purchase_paid(account_id: str, amount: int = 250, purpose: str = "credits", **extra) -> dict:
    """A PaymentIntent as Stripe sends it when a purchase Conduit created has succeeded."""
    metadata = {"accountId": account_id, "credits": str(amount), "purpose": purpose, **extra}
    return payment_intent_object({"amount": "500", "customer": "cus_x", "payment_method": SUCCEEDS, "metadata": metadata})


def deliver(stripe_event: dict, **signing) -> dict:
    body, headers = signed(stripe_event, **signing)
    return stripe_events.handle(body, headers["Stripe-Signature"], LocalLambdaContext("StripeWebhookFunction", 512, 29, "test"))


def balance(account_id: str) -> int:
    return AccountsRepository().get(account_id).credits


def ledger(account_id: str) -> list[tuple[int, str]]:
    return [(entry["delta"], entry["reason"]) for entry in credits.ledger_page(account_id, 100).items]


def event_records() -> int:
    return len(Repository().query_all(stripe_events.IDEMPOTENCY_PARTITION))


# --- in-process: verification ------------------------------------------------------------------


def test_a_valid_payment_event_grants_once_however_often_it_comes(aws):
    account_id = open_account()
    paid = event("payment_intent.succeeded", purchase_paid(account_id))
    first = deliver(paid)
    assert first == {"received": True, "eventId": paid["id"], "type": paid["type"], "outcome": "credits granted"}
    assert deliver(paid) == first  # the duplicate gets the first delivery's answer
    # Another event for the same PaymentIntent (Stripe resends, or the purchase's own response
    # granted first): the grant is keyed on the PaymentIntent, so it is still once.
    assert deliver(event("payment_intent.succeeded", paid["data"]["object"]))["outcome"] == "credits granted"
    assert balance(account_id) == 350
    assert ledger(account_id) == [(250, "credit purchase: 250 credits"), (100, "signup")]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body, headers: (body, {"Stripe-Signature": signed(body, secret="whsec_forged")[1]["Stripe-Signature"]}), id="forged"),
        pytest.param(lambda body, headers: (body.replace('"250"', '"3500"'), headers), id="body-changed-after-signing"),
        pytest.param(lambda body, headers: signed(body, timestamp=int(time.time()) - 301), id="stale"),
        pytest.param(lambda body, headers: (body, {}), id="missing-signature"),
        pytest.param(lambda body, headers: (body, {"Stripe-Signature": "t=abc,v1=zz"}), id="malformed-signature"),
        pytest.param(lambda body, headers: signed(body[:-5]), id="signed-malformed-json"),
        pytest.param(lambda body, headers: signed('{"id": "evt_1", "object": "event"}'), id="signed-not-an-event"),
        pytest.param(lambda body, headers: signed("[1, 2]"), id="signed-json-array"),
    ],
)
def test_bad_deliveries_are_refused_and_change_nothing(aws, tamper):
    account_id = open_account()
    body, headers = signed(event("payment_intent.succeeded", purchase_paid(account_id)))
    body, headers = tamper(body, headers)
    with pytest.raises(ConduitError) as raised:
        stripe_events.handle(body, headers.get("Stripe-Signature"))
    assert (raised.value.code, raised.value.status) == ("VALIDATION_ERROR", 400)
    assert raised.value.details[0]["field"] in ("Stripe-Signature", "body")
    assert balance(account_id) == 100 and ledger(account_id) == [(100, "signup")]
    assert event_records() == 0


def test_a_replayed_delivery_signed_long_ago_is_refused_even_if_once_valid(aws):
    account_id = open_account()
    old = int(time.time()) - 3600
    body, headers = signed(event("payment_intent.succeeded", purchase_paid(account_id), created=old), timestamp=old)
    with pytest.raises(ConduitError) as raised:
        stripe_events.handle(body, headers["Stripe-Signature"])
    assert raised.value.code == "VALIDATION_ERROR" and balance(account_id) == 100


def test_unknown_types_and_unknown_accounts_are_acknowledged_and_change_nothing(aws):
    account_id = open_account()
    assert deliver(event("charge.refund.updated", {"id": "re_1", "object": "refund"}))["outcome"] == "ignored: event type not handled"
    assert deliver(event("payment_intent.succeeded", purchase_paid("usr_nobody")))["outcome"] == "ignored: unknown account"
    no_metadata = payment_intent_object({"customer": "cus_unknown", "metadata": {}})
    assert deliver(event("payment_intent.succeeded", no_metadata))["outcome"] == "ignored: unknown account"
    # A payment Conduit did not create for credits (e.g. an invoice's) grants nothing.
    invoice_payment = payment_intent_object({"metadata": {"accountId": account_id}})
    assert deliver(event("payment_intent.succeeded", invoice_payment))["outcome"] == "ignored: not a credit purchase"
    assert balance(account_id) == 100 and ledger(account_id) == [(100, "signup")]


# --- in-process: out of order ---------------------------------------------------------------


def subscription_event(type_: str, account_id: str, status: str, created: int, subscription_id: str = "sub_1", tier: str = "pro") -> dict:
    subscription = subscription_object({"metadata": {"accountId": account_id, "tier": tier}}, id=subscription_id, status=status)
    return event(type_, subscription, created=created)


def test_subscription_events_apply_in_stripe_order_whatever_the_delivery_order(aws):
    account_id = open_account()
    now = int(time.time())
    activated = subscription_event("customer.subscription.updated", account_id, "active", now - 10)
    past_due = subscription_event("customer.subscription.updated", account_id, "past_due", now - 20)
    assert deliver(activated)["outcome"] == "subscription active"
    assert deliver(past_due)["outcome"] == "ignored: older than the state applied, or not the account's subscription"  # late news
    account = AccountsRepository().get(account_id)
    assert (account.tier, account.subscription_status) == ("pro", "active")
    deleted = subscription_event("customer.subscription.deleted", account_id, "canceled", now - 5)
    assert deliver(deleted)["outcome"] == "subscription canceled"
    late_active = subscription_event("customer.subscription.updated", account_id, "active", now - 7)
    assert deliver(late_active)["outcome"] == "ignored: older than the state applied, or not the account's subscription"
    account = AccountsRepository().get(account_id)
    assert (account.tier, account.subscription_status) == ("free", "canceled")


def test_an_old_subscription_ending_does_not_cancel_the_new_one(aws):
    account_id = open_account()
    now = int(time.time())
    deliver(subscription_event("customer.subscription.created", account_id, "active", now - 5, subscription_id="sub_new", tier="team"))
    outcome = deliver(subscription_event("customer.subscription.deleted", account_id, "canceled", now, subscription_id="sub_old"))
    assert outcome["outcome"] == "ignored: older than the state applied, or not the account's subscription"
    account = AccountsRepository().get(account_id)
    assert (account.tier, account.subscription_status) == ("team", "active")


def test_past_due_keeps_the_tier_for_the_grace_period_then_reads_as_free(aws):
    account_id = open_account()
    now = int(time.time())
    deliver(subscription_event("customer.subscription.updated", account_id, "active", now - 30))
    deliver(subscription_event("customer.subscription.updated", account_id, "past_due", now - 20))
    deliver(subscription_event("customer.subscription.updated", account_id, "past_due", now - 10))  # keeps pastDueSince
    item = Repository().get(f"ACCOUNT#{account_id}", "ACCOUNT")
    since = datetime.fromtimestamp(now - 20, UTC)
    assert item["pastDueSince"].startswith(since.strftime("%Y-%m-%dT%H:%M:%S"))
    assert Account.from_item(item, now=since + timedelta(days=6, hours=23)).tier == "pro"
    assert Account.from_item(item, now=since + timedelta(days=7)).tier == "free"  # pastDueGraceDays of the tiers file
    deliver(subscription_event("customer.subscription.updated", account_id, "active", now))
    item = Repository().get(f"ACCOUNT#{account_id}", "ACCOUNT")
    assert "pastDueSince" not in item and Account.from_item(item, now=since + timedelta(days=30)).tier == "pro"


def test_monthly_credits_once_per_invoice_and_only_for_monthly_invoices(aws):
    account_id = open_account()
    now = int(time.time())
    deliver(subscription_event("customer.subscription.created", account_id, "active", now - 5, subscription_id="sub_9", tier="pro"))
    metadata = {"accountId": account_id, "tier": "pro"}
    invoice = invoice_object("cus_x", "sub_9", "subscription_cycle", metadata)
    assert deliver(event("invoice.paid", invoice))["outcome"] == "monthly credits granted"
    assert deliver(event("invoice.paid", invoice))["outcome"] == "monthly credits granted"  # another event, same invoice
    proration = invoice_object("cus_x", "sub_9", "subscription_update", metadata)
    assert deliver(event("invoice.paid", proration))["outcome"] == "ignored: not a monthly invoice"
    assert ledger(account_id) == [(50000, "monthly credits (pro)"), (100, "signup")]
    failed = invoice_object("cus_x", "sub_9", "subscription_cycle", metadata)
    assert deliver(event("invoice.payment_failed", failed))["outcome"] == "subscription past due"
    assert AccountsRepository().get(account_id).subscription_status == "past_due"
    other = invoice_object("cus_x", "sub_other", "subscription_cycle", metadata)
    assert deliver(event("invoice.payment_failed", other))["outcome"].startswith("ignored")


def test_cards_follow_setup_and_detach_events_in_order(aws):
    account_id = open_account()
    now = int(time.time())

    def saved(method: str, created: int) -> dict:
        intent = {"id": f"seti_{method}", "object": "setup_intent", "customer": f"cus_{account_id}", "payment_method": method,
                  "metadata": {"accountId": account_id}, "status": "succeeded", "usage": "off_session"}
        return event("setup_intent.succeeded", intent, created=created)

    assert deliver(saved("pm_new", now))["outcome"] == "card on file"
    assert deliver(saved("pm_old", now - 60))["outcome"] == "ignored: a newer card is on file"
    assert BillingRepository().profile(account_id).payment_method_id == "pm_new"
    assert BillingRepository().account_for_customer(f"cus_{account_id}") == account_id
    # A detached card has lost its customer; the event's previous_attributes still name it.
    detached = event("payment_method.detached", {"id": "pm_new", "object": "payment_method", "customer": None},
                     created=now + 1, previous_attributes={"customer": f"cus_{account_id}"})
    assert deliver(detached)["outcome"] == "card removed"
    assert BillingRepository().profile(account_id).payment_method_id is None


def test_a_failed_top_up_payment_turns_auto_top_up_off_unless_settings_changed_since(aws):
    account_id = open_account()
    BillingRepository().set_payment_method(account_id, SUCCEEDS, int(time.time()))
    billing.set_auto_top_up(AccountsRepository().get(account_id), True, 50, 250)
    intent = payment_intent_object({"metadata": {"accountId": account_id, "credits": "250", "purpose": "auto_top_up"}},
                                   status="requires_payment_method", last_payment_error={"code": "card_declined", "message": "Your card was declined."})
    stale = event("payment_intent.payment_failed", intent, created=int(time.time()) - 60)
    assert deliver(stale)["outcome"] == "ignored: auto top-up was changed since"
    assert deliver(event("payment_intent.payment_failed", intent))["outcome"] == "auto top-up turned off"
    view = billing.overview(AccountsRepository().get(account_id))["autoTopUp"]
    assert view["enabled"] is False and view["lastFailure"]["reason"] == "The payment was declined: Your card was declined."


# --- through the local stack ------------------------------------------------------------------

stack = pytest.mark.stack


@pytest.fixture
def member(client):
    return signed_up(client)


def post_event(client, stripe_event: dict | str, **signing) -> httpx.Response:
    body, headers = signed(stripe_event, **signing)
    return client.post("/stripe/webhook", content=body, headers=headers)


def stack_ledger(client, headers) -> list[tuple[int, str]]:
    items = client.get("/billing/ledger", params={"limit": 100}, headers=headers).json()["items"]
    return [(entry["delta"], entry["reason"]) for entry in items]


def add_card(client, account_id: str, headers, method: str = SUCCEEDS) -> None:
    """What a browser and Stripe do: a SetupIntent from the API, then setup_intent.succeeded."""
    assert client.post("/billing/payment-methods/setup", json={}, headers=headers).json()["clientSecret"].startswith("seti_")
    intent = {"id": f"seti_{uuid.uuid4().hex}", "object": "setup_intent", "payment_method": method, "status": "succeeded",
              "metadata": {"accountId": account_id}, "usage": "off_session"}
    assert post_event(client, event("setup_intent.succeeded", intent)).json()["outcome"] == "card on file"
    assert client.get("/billing", headers=headers).json()["hasPaymentMethod"] is True


@stack
def test_five_parallel_deliveries_of_one_payment_grant_once(client, member, local_stack):
    account_id, headers = member
    body, signature = signed(event("payment_intent.succeeded", purchase_paid(account_id, 600)))

    def deliver_once(_):
        return httpx.post(f"{local_stack.url}/stripe/webhook", content=body, headers=signature, timeout=60)

    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(deliver_once, range(5)))
    # A delivery that overlaps the one applying the event is told to come back (503), as Stripe will.
    assert {response.status_code for response in responses} <= {200, 503} and 200 in {r.status_code for r in responses}
    for response in responses:
        if response.status_code == 503:
            assert response.json()["code"] == "BILLING_UNAVAILABLE"
            assert deliver_once(0).status_code == 200
    assert {r.json()["outcome"] for r in responses if r.status_code == 200} == {"credits granted"}
    assert stack_ledger(client, headers) == [(600, "credit purchase: 600 credits"), (100, "signup")]
    assert client.get("/billing", headers=headers).json()["credits"] == 700


@stack
def test_past_due_blocks_purchases_until_stripe_says_active(client, member, fake_stripe):
    account_id, headers = member
    add_card(client, account_id, headers)
    now = int(time.time())
    assert post_event(client, subscription_event("customer.subscription.updated", account_id, "past_due", now - 5)).status_code == 200
    assert client.get("/billing", headers=headers).json()["subscriptionStatus"] == "past_due"
    assert_error(client.post("/billing/credits/purchase", json={"credits": 250}, headers=headers), 402, "SUBSCRIPTION_PAST_DUE")
    assert_error(client.post("/billing/subscription", json={"tier": "team"}, headers=headers), 402, "SUBSCRIPTION_PAST_DUE")
    assert_error(
        client.put("/billing/auto-topup", json={"enabled": True, "thresholdCredits": 10, "topUpCredits": 250}, headers=headers),
        402,
        "SUBSCRIPTION_PAST_DUE",
    )
    assert post_event(client, subscription_event("customer.subscription.updated", account_id, "active", now)).status_code == 200
    bought = client.post("/billing/credits/purchase", json={"credits": 250}, headers={**headers, "Idempotency-Key": "k1"})
    assert bought.status_code == 200, bought.text
    assert bought.json()["balance"] == 350 and bought.json()["status"] == "succeeded"
    overview = client.get("/billing", headers=headers).json()
    assert (overview["tier"], overview["subscriptionStatus"], overview["credits"]) == ("pro", "active", 350)


@stack
def test_bad_webhook_calls_change_nothing(client, member):
    account_id, headers = member
    paid = event("payment_intent.succeeded", purchase_paid(account_id))
    body, good = signed(paid)
    forged = client.post("/stripe/webhook", content=body, headers={**good, "Stripe-Signature": signed(body, secret="whsec_x")[1]["Stripe-Signature"]})
    assert_error(forged, 400, "VALIDATION_ERROR")
    assert_error(post_event(client, paid, timestamp=int(time.time()) - 400), 400, "VALIDATION_ERROR")  # stale
    assert_error(client.post("/stripe/webhook", content=body, headers={"Content-Type": "application/json"}), 400, "VALIDATION_ERROR")
    assert_error(post_event(client, "{not json"), 400, "VALIDATION_ERROR")
    assert_error(client.post("/stripe/webhook", content=body, headers={**good, "Content-Type": "text/plain"}), 400, "VALIDATION_ERROR")
    ignored = post_event(client, event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert ignored.status_code == 200 and ignored.json()["outcome"] == "ignored: event type not handled"
    stranger = post_event(client, event("payment_intent.succeeded", purchase_paid("usr_nobody")))
    assert stranger.status_code == 200 and stranger.json()["outcome"] == "ignored: unknown account"
    assert_error(client.post("/billing/credits/purchase", json={"credits": 300}, headers=headers), 400, "VALIDATION_ERROR")
    assert_error(client.post("/billing/credits/purchase", json={"credits": "250"}, headers=headers), 400, "VALIDATION_ERROR")
    assert_error(client.post("/billing/credits/purchase", json={"credits": 250}, headers=headers), 402, "NO_PAYMENT_METHOD")
    assert stack_ledger(client, headers) == [(100, "signup")]


@stack
def test_declined_and_parallel_purchases_through_the_stack(client, member, local_stack):
    account_id, headers = member
    add_card(client, account_id, headers)

    def buy(key):
        return httpx.post(f"{local_stack.url}/billing/credits/purchase", json={"credits": 250},
                          headers={**headers, "Idempotency-Key": key}, timeout=60)

    with ThreadPoolExecutor(max_workers=6) as pool:
        distinct = list(pool.map(buy, [f"distinct-{n}" for n in range(4)]))
        same = list(pool.map(buy, ["same-key"] * 4))
    assert [r.status_code for r in distinct + same] == [200] * 8
    assert len({r.json()["paymentIntentId"] for r in same}) == 1
    assert client.get("/billing", headers=headers).json()["credits"] == 100 + 5 * 250
    assert stack_ledger(client, headers).count((250, "credit purchase: 250 credits")) == 5
    # A newer card that declines: PAYMENT_FAILED, and nothing more is granted.
    add_card(client, account_id, headers, DECLINED)
    assert_error(client.post("/billing/credits/purchase", json={"credits": 250}, headers=headers), 402, "PAYMENT_FAILED")
    assert client.get("/billing", headers=headers).json()["credits"] == 1350


@stack
def test_billing_is_the_workspace_owners(client, admin):
    owner = register(client)
    owner_headers = bearer(owner["accessToken"])
    client.post("/auth/accept-terms", json={}, headers=owner_headers)
    client.patch(f"/admin/accounts/{owner['user']['id']}", json={"tier": "team"}, headers=admin)
    workspace = client.post("/workspaces", json={"name": "Billing Co"}, headers=owner_headers).json()
    colleague = register(client)
    colleague_headers = bearer(colleague["accessToken"])
    client.post("/auth/accept-terms", json={}, headers=colleague_headers)
    added = client.post(f"/workspaces/{workspace['id']}/members", json={"email": colleague["user"]["email"], "role": "admin"}, headers=owner_headers)
    assert added.status_code == 201, added.text
    body = {"credits": 250, "workspaceId": workspace["id"]}
    assert_error(client.post("/billing/credits/purchase", json=body, headers=colleague_headers), 403, "PERMISSION_DENIED")
    assert_error(client.post("/billing/credits/purchase", json=body, headers=owner_headers), 402, "NO_PAYMENT_METHOD")


@stack
def test_without_a_stripe_key_every_billing_route_answers_and_webhooks_still_work(monkeypatch):
    monkeypatch.delenv("STRIPE_SECRET_KEY")
    keyless = LocalStack(port=0, quiet=True).start(warm=False).serve_in_background()
    try:
        with httpx.Client(base_url=keyless.url, timeout=60) as client:
            session = register(client)
            account_id, headers = session["user"]["id"], bearer(session["accessToken"])
            client.post("/auth/accept-terms", json={}, headers=headers)
            assert client.get("/billing", headers=headers).status_code == 200
            assert client.get("/billing/ledger", headers=headers).status_code == 200
            assert_error(client.post("/billing/payment-methods/setup", json={}, headers=headers), 503, "BILLING_UNAVAILABLE")
            assert_error(client.post("/billing/credits/purchase", json={"credits": 250}, headers=headers), 402, "NO_PAYMENT_METHOD")
            assert_error(client.post("/billing/subscription", json={"tier": "pro"}, headers=headers), 402, "NO_PAYMENT_METHOD")
            turned_off = client.put("/billing/auto-topup", json={"enabled": False, "thresholdCredits": 0, "topUpCredits": 0}, headers=headers)
            assert turned_off.status_code == 200
            paid = post_event(client, event("payment_intent.succeeded", purchase_paid(account_id)))
            assert paid.status_code == 200 and paid.json()["outcome"] == "credits granted"
            assert client.get("/billing", headers=headers).json()["credits"] == 350
    finally:
        keyless.stop()


def test_events_are_recorded_for_a_week_under_the_table_ttl(aws):
    account_id = open_account()
    deliver(event("payment_intent.succeeded", purchase_paid(account_id)))
    [record] = Repository().query_all(stripe_events.IDEMPOTENCY_PARTITION)
    assert record["status"] == "COMPLETED" and json.loads(record["data"])["outcome"] == "credits granted"
    assert 6 * 86400 < int(record["expiresAt"]) - time.time() <= 7 * 86400


@stack
def test_a_chat_spend_under_the_threshold_tops_up_once_asynchronously(client, member, fake_stripe):
    """Through the stack: the chat function's spend claims the top-up and invokes the billing
    function asynchronously (through the emulator's Lambda Invoke), which charges the card."""
    account_id, headers = member
    add_card(client, account_id, headers)
    settings = {"enabled": True, "thresholdCredits": 100, "topUpCredits": 250}
    assert client.put("/billing/auto-topup", json=settings, headers=headers).status_code == 200
    token = client.post("/sessions", json={}, headers=headers).json()["sessionToken"]
    answered = client.post("/chat", json={"sessionToken": token, "message": "hello"}, headers=headers)
    assert answered.status_code == 200, answered.text
    deadline = time.monotonic() + 30  # waiting for the asynchronous invocation, not timing it
    while time.monotonic() < deadline and (250, "auto top-up: 250 credits") not in stack_ledger(client, headers):
        time.sleep(0.2)
    entries = stack_ledger(client, headers)
    assert entries.count((250, "auto top-up: 250 credits")) == 1, entries
    charges = [r for r in fake_stripe.requests_to("POST", "/v1/payment_intents") if r.params["metadata"]["accountId"] == account_id]
    assert len(charges) == 1 and charges[0].params["metadata"]["purpose"] == "auto_top_up"
    overview = client.get("/billing", headers=headers).json()
    assert overview["credits"] == 100 - sum(-delta for delta, _ in entries if delta < 0) + 250


@stack
def test_an_idempotency_key_is_printable_ascii(client, member):
    _, headers = member
    response = client.post("/billing/credits/purchase", json={"credits": 250}, headers={**headers, "Idempotency-Key": "a key"})
    assert_error(response, 400, "VALIDATION_ERROR")
