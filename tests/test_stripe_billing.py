"""Billing against Stripe's wire format: the real stripe library talks to a loopback Stripe
(tests/stripe_server.py); DynamoDB is moto in-process. Cards, purchases (succeeded, declined,
authentication required, idempotent replay), auto top-up, plan changes, and the checks before
Stripe is called at all."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from moto.core.config import default_user_config

from conduit.billing import payments as billing

from conduit.billing import credits
from conduit.platform import aws as aws_clients
from conduit.platform.errors import ConduitError
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.billing import BillingRepository
from conduit.platform.settings import get_settings

from .helpers import open_account

from .stripe_server import DECLINED, NEEDS_AUTHENTICATION, SUCCEEDS


def account(account_id: str):
    return AccountsRepository().get(account_id)


def with_card(account_id: str, card: str = SUCCEEDS) -> str:
    """An account with a Stripe customer (made through a real SetupIntent) and `card` on file,
    as the setup_intent.succeeded webhook leaves it."""
    billing.create_setup_intent(account(account_id), None)
    assert BillingRepository().set_payment_method(account_id, card, int(time.time()))
    return account_id


def ledger(account_id: str) -> list[tuple[int, int, str]]:
    return [(entry["delta"], entry["balance"], entry["reason"]) for entry in credits.ledger_page(account_id, 100).items]


def code_of(call, *args) -> ConduitError:
    with pytest.raises(ConduitError) as raised:
        call(*args)
    return raised.value


# --- the card -------------------------------------------------------------------------------


def test_a_setup_intent_creates_the_customer_once_with_the_account_id(aws, fake_stripe):
    account_id = open_account()
    first = billing.create_setup_intent(account(account_id), "setup-1")
    second = billing.create_setup_intent(account(account_id), None)
    assert first["clientSecret"].startswith("seti_") and "_secret_" in first["clientSecret"]
    assert first["clientSecret"] != second["clientSecret"]
    customer_id = BillingRepository().profile(account_id).customer_id
    assert fake_stripe.customers[customer_id]["metadata"] == {"accountId": account_id}
    customer_calls = [r for r in fake_stripe.requests_to("POST", "/v1/customers") if r.params["metadata"]["accountId"] == account_id]
    assert len(customer_calls) == 1 and customer_calls[0].headers["idempotency-key"] == f"customer:{account_id}"
    setups = [r for r in fake_stripe.requests_to("POST", "/v1/setup_intents") if r.params["customer"] == customer_id]
    assert [r.params["usage"] for r in setups] == ["off_session", "off_session"]
    assert setups[0].headers["idempotency-key"] == f"setup:{account_id}:setup-1"
    assert setups[1].headers["idempotency-key"].startswith(f"setup:{account_id}:req_")
    assert BillingRepository().account_for_customer(customer_id) == account_id


def test_parallel_first_uses_make_one_customer(aws, fake_stripe):
    account_id = open_account()
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda _: billing.create_setup_intent(account(account_id), None), range(6)))
    customer_id = BillingRepository().profile(account_id).customer_id
    calls = [r for r in fake_stripe.requests_to("POST", "/v1/customers") if r.params["metadata"]["accountId"] == account_id]
    assert {r.status for r in calls} == {200} and sum(not r.replayed for r in calls) == 1  # the rest replayed
    setups = [r for r in fake_stripe.requests_to("POST", "/v1/setup_intents") if r.params["customer"] == customer_id]
    assert len(setups) == 6


# --- buying credits --------------------------------------------------------------------------


def test_a_purchase_charges_the_pack_off_session_and_grants_it(aws, fake_stripe):
    account_id = with_card(open_account())
    result = billing.purchase_credits(account(account_id), 600, "buy-1")
    assert result["status"] == "succeeded" and result["credits"] == 600 and result["balance"] == 700
    [call] = fake_stripe.requests_to("POST", "/v1/payment_intents")[-1:]
    assert call.headers["idempotency-key"] == f"purchase:{account_id}:buy-1"
    assert call.params["amount"] == "1000" and call.params["currency"] == "usd"  # the 600 pack is $10
    assert (call.params["off_session"], call.params["confirm"], call.params["payment_method"]) == ("true", "true", SUCCEEDS)
    assert call.params["metadata"] == {"accountId": account_id, "credits": "600", "purpose": "credits"}
    assert ledger(account_id)[0] == (600, 700, "credit purchase: 600 credits")
    assert account(account_id).credits == 700


def test_a_declined_card_is_payment_failed_and_the_ledger_is_untouched(aws, fake_stripe):
    account_id = with_card(open_account(), DECLINED)
    error = code_of(billing.purchase_credits, account(account_id), 250, None)
    assert (error.code, error.status) == ("PAYMENT_FAILED", 402)
    assert "declined" in error.message
    assert fake_stripe.requests_to("POST", "/v1/payment_intents")[-1].status == 402
    assert ledger(account_id) == [(100, 100, "signup")]


def test_a_card_that_needs_the_customer_says_to_come_back_and_pay_in_session(aws, fake_stripe):
    account_id = with_card(open_account(), NEEDS_AUTHENTICATION)
    error = code_of(billing.purchase_credits, account(account_id), 250, None)
    assert (error.code, error.status) == ("PAYMENT_FAILED", 402)
    assert "come back and pay in session" in error.message
    assert ledger(account_id) == [(100, 100, "signup")]


def test_a_retried_purchase_replays_the_same_stripe_call_and_grants_once(aws, fake_stripe):
    account_id = with_card(open_account())
    first = billing.purchase_credits(account(account_id), 250, "retry-me")
    again = billing.purchase_credits(account(account_id), 250, "retry-me")
    assert again["paymentIntentId"] == first["paymentIntentId"] and again["balance"] == first["balance"] == 350
    calls = [r for r in fake_stripe.requests_to("POST", "/v1/payment_intents") if r.params["metadata"]["accountId"] == account_id]
    assert [r.headers["idempotency-key"] for r in calls] == [f"purchase:{account_id}:retry-me"] * 2
    assert [r.replayed for r in calls] == [False, True]
    assert ledger(account_id) == [(250, 350, "credit purchase: 250 credits"), (100, 100, "signup")]
    # The same key for another request is refused, by Stripe and so by Conduit.
    error = code_of(billing.purchase_credits, account(account_id), 600, "retry-me")
    assert error.code == "VALIDATION_ERROR" and error.details[0]["field"] == "Idempotency-Key"
    assert account(account_id).credits == 350


def test_parallel_retries_with_one_key_charge_once(aws, fake_stripe):
    account_id = with_card(open_account())
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda _: billing.purchase_credits(account(account_id), 250, "same"), range(5)))
    assert len({result["paymentIntentId"] for result in results}) == 1
    assert account(account_id).credits == 350 and len(ledger(account_id)) == 2


def test_checks_before_stripe_amount_then_past_due_then_card(aws, fake_stripe):
    account_id = open_account()
    calls_before = len(fake_stripe.requests)
    error = code_of(billing.purchase_credits, account(account_id), 251, None)
    assert error.code == "VALIDATION_ERROR" and error.details == [
        {"field": "credits", "message": "must be one of the credit packs: 250, 600, 1300, 3500"}
    ]
    assert code_of(billing.purchase_credits, account(account_id), 250, None).code == "NO_PAYMENT_METHOD"
    AccountsRepository().set_subscription_status(account_id, "past_due")
    # Past due is checked before the card: it is what the user must fix first.
    error = code_of(billing.purchase_credits, account(account_id), 250, None)
    assert (error.code, error.status) == ("SUBSCRIPTION_PAST_DUE", 402)
    assert len(fake_stripe.requests) == calls_before  # Stripe never called
    assert ledger(account_id) == [(100, 100, "signup")]


def test_without_a_stripe_key_stripe_routes_answer_billing_unavailable(aws, fake_stripe, monkeypatch):
    monkeypatch.delenv("STRIPE_SECRET_KEY")
    get_settings.cache_clear()
    account_id = open_account()
    error = code_of(billing.create_setup_intent, account(account_id), None)
    assert (error.code, error.status) == ("BILLING_UNAVAILABLE", 503) and "no Stripe API key" in error.message
    assert billing.overview(account(account_id))["hasPaymentMethod"] is False  # reads still work


def test_stripe_unreachable_is_billing_unavailable(aws, monkeypatch):
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:9")  # discard port: nothing listens
    get_settings.cache_clear()
    monkeypatch.setattr("conduit.billing.stripe_api.NETWORK_RETRIES", 0)
    error = code_of(billing.create_setup_intent, account(open_account()), None)
    assert (error.code, error.status) == ("BILLING_UNAVAILABLE", 503)


# --- auto top-up -----------------------------------------------------------------------------


@pytest.fixture
def top_up_function(aws, monkeypatch):
    """The billing function in moto's Lambda (without Docker: an invocation is accepted, not run),
    so a spend's asynchronous Invoke succeeds and the claim it took stays in place."""
    monkeypatch.setitem(default_user_config, "lambda", {"use_docker": False})
    role = boto3.client("iam").create_role(RoleName="billing", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto3.client("lambda").create_function(
        FunctionName="BillingFunction", Runtime="python3.13", Role=role, Handler="app.lambda_handler", Code={"ZipFile": b"PK"}
    )
    monkeypatch.setenv("TOP_UP_FUNCTION", "BillingFunction")
    get_settings.cache_clear()
    aws_clients.clear()
    yield "BillingFunction"
    aws_clients.clear()


def test_enabling_auto_top_up_needs_a_pack_good_standing_and_a_card(aws, fake_stripe):
    account_id = open_account()
    assert code_of(billing.set_auto_top_up, account(account_id), True, 50, 100).code == "VALIDATION_ERROR"
    assert code_of(billing.set_auto_top_up, account(account_id), True, 0, 250).code == "VALIDATION_ERROR"
    assert code_of(billing.set_auto_top_up, account(account_id), True, 50, 250).code == "NO_PAYMENT_METHOD"
    AccountsRepository().set_subscription_status(account_id, "past_due")
    assert code_of(billing.set_auto_top_up, account(account_id), True, 50, 250).code == "SUBSCRIPTION_PAST_DUE"
    # Turning it off is always allowed.
    view = billing.set_auto_top_up(account(account_id), False, 0, 0)
    assert view == {"enabled": False, "thresholdCredits": 0, "topUpCredits": 0, "lastFailure": None}


def test_a_spend_under_the_threshold_starts_one_top_up_which_charges_once(top_up_function, fake_stripe):
    account_id = with_card(open_account())
    billing.set_auto_top_up(account(account_id), True, 50, 250)
    credits.spend(account_id, 40, "chat", "spend-1")  # 60 left: above the threshold
    assert BillingRepository().profile(account_id).top_up_claim is None
    # Parallel spends that all end under the threshold start one top-up between them.
    with ThreadPoolExecutor(max_workers=5) as pool:
        list(pool.map(lambda n: credits.spend(account_id, 5, "chat", f"spend-p{n}"), range(5)))
    profile = BillingRepository().profile(account_id)
    assert profile.account.credits == 35 and profile.top_up_claim is not None
    claim = profile.top_up_claim

    outcome = billing.run_top_up(account_id, claim)
    assert outcome["outcome"] == "succeeded"
    [call] = [r for r in fake_stripe.requests_to("POST", "/v1/payment_intents") if r.params["metadata"]["accountId"] == account_id]
    assert call.headers["idempotency-key"] == f"topup:{account_id}:{claim}"
    assert call.params["metadata"] == {"accountId": account_id, "credits": "250", "purpose": "auto_top_up", "claim": claim}
    profile = BillingRepository().profile(account_id)
    assert profile.account.credits == 285 and profile.top_up_claim is None
    assert ledger(account_id)[0] == (250, 285, "auto top-up: 250 credits")
    # A retried invocation of the same top-up finds its claim gone and charges nothing.
    assert billing.run_top_up(account_id, claim)["outcome"].startswith("skipped")
    assert len([r for r in fake_stripe.requests_to("POST", "/v1/payment_intents") if r.params["metadata"]["accountId"] == account_id]) == 1


def test_a_failed_top_up_turns_auto_top_up_off_and_says_why(top_up_function, fake_stripe):
    account_id = with_card(open_account(), DECLINED)
    billing.set_auto_top_up(account(account_id), True, 50, 250)
    credits.spend(account_id, 60, "chat", "spend-1")
    claim = BillingRepository().profile(account_id).top_up_claim
    outcome = billing.run_top_up(account_id, claim)
    assert outcome["outcome"] == "failed" and outcome["code"] == "PAYMENT_FAILED"
    view = billing.overview(account(account_id))["autoTopUp"]
    assert view["enabled"] is False and "declined" in view["lastFailure"]["reason"]
    assert BillingRepository().profile(account_id).top_up_claim is None
    assert account(account_id).credits == 40
    # Off now: further spends start nothing.
    credits.spend(account_id, 1, "chat", "spend-2")
    assert BillingRepository().profile(account_id).top_up_claim is None


def test_when_the_top_up_cannot_be_started_the_claim_is_released(aws, fake_stripe, monkeypatch):
    monkeypatch.setenv("TOP_UP_FUNCTION", "NoSuchFunction")  # moto has no such function: Invoke fails
    get_settings.cache_clear()
    account_id = with_card(open_account())
    billing.set_auto_top_up(account(account_id), True, 50, 250)
    assert credits.spend(account_id, 60, "chat", "spend-1") == 40  # the spend stands
    assert BillingRepository().profile(account_id).top_up_claim is None  # a later spend may try again


# --- plan changes --------------------------------------------------------------------------


def test_subscribing_then_changing_plan_then_cancelling(aws, fake_stripe):
    account_id = with_card(open_account())
    created = billing.change_subscription(account(account_id), "pro", "plan-1")
    assert created["status"] == "active" and created["tier"] == "pro"
    [call] = fake_stripe.requests_to("POST", "/v1/subscriptions")[-1:]
    assert call.params["items"] == [{"price": "price_pro"}]
    assert call.params["metadata"] == {"accountId": account_id, "tier": "pro"}
    assert (call.params["payment_behavior"], call.params["default_payment_method"]) == ("error_if_incomplete", SUCCEEDS)
    assert call.headers["idempotency-key"] == f"subscription:{account_id}:plan-1"
    # The tier changes when Stripe says so (customer.subscription.* events), not before.
    assert account(account_id).tier == "free"
    subscription_id = created["subscriptionId"]
    BillingRepository().apply_subscription(
        account_id, subscription_id=subscription_id, status="active", tier="pro", event_created=int(time.time()), changed_at="2026-01-01T00:00:00.000000Z"
    )
    changed = billing.change_subscription(account(account_id), "team", None)
    assert changed["subscriptionId"] == subscription_id
    item_id = fake_stripe.subscriptions[subscription_id]["items"]["data"][0]["id"]
    [update] = fake_stripe.requests_to("POST", f"/v1/subscriptions/{subscription_id}")[-1:]
    assert update.params["items"] == [{"id": item_id, "price": "price_team"}]
    assert update.params["metadata"]["tier"] == "team"
    cancelled = billing.change_subscription(account(account_id), "free", None)
    assert cancelled["cancelAtPeriodEnd"] is True


def test_plan_changes_check_the_tier_past_due_and_card_first(aws, fake_stripe, monkeypatch):
    account_id = open_account()
    assert code_of(billing.change_subscription, account(account_id), "platinum", None).code == "VALIDATION_ERROR"
    assert code_of(billing.change_subscription, account(account_id), "pro", None).code == "NO_PAYMENT_METHOD"
    assert billing.change_subscription(account(account_id), "free", None)["subscriptionId"] is None
    AccountsRepository().set_subscription_status(account_id, "past_due")
    assert code_of(billing.change_subscription, account(account_id), "pro", None).code == "SUBSCRIPTION_PAST_DUE"
    monkeypatch.setenv("STRIPE_TIER_PRICES", "pro=price_pro")
    get_settings.cache_clear()
    AccountsRepository().set_subscription_status(account_id, "active")
    error = code_of(billing.change_subscription, account(account_id), "team", None)
    assert error.code == "VALIDATION_ERROR" and "no Stripe price" in error.message


def test_the_tiers_file_refuses_two_packs_of_the_same_credits(tmp_path):
    import json

    from conduit.platform.tiers import DEFAULT_TIERS_FILE, TiersFileError, load_tiers

    tiers = json.loads(DEFAULT_TIERS_FILE.read_text())
    tiers["creditPacks"].append({"credits": 250, "priceUsd": 4})
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps(tiers))
    with pytest.raises(TiersFileError, match="creditPacks: .*two packs of the same credits: 250"):
        load_tiers(path)


def test_auto_top_up_names_its_own_field(aws):
    error = code_of(billing.set_auto_top_up, account(open_account()), True, 50, 100)
    assert error.details == [{"field": "topUpCredits", "message": "must be one of the credit packs: 250, 600, 1300, 3500"}]


def test_functions_that_only_spend_never_import_stripe():
    """stripe costs ~100 ms of cold start: only the billing and webhook functions pay it."""
    import subprocess
    import sys

    code = "import sys; import conduit.chat.exchange, conduit.billing.credits, conduit.billing.auto_top_up; print('stripe' in sys.modules)"
    from .conftest import ROOT

    environment = {"PYTHONPATH": str(ROOT / "layers" / "conduit")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment, cwd=ROOT)
    assert result.stdout.strip() == "False"
