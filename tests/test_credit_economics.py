"""Credit economics (API.md §15), in-process against moto: the pricing formula in decimal, holds
that refuse before the provider is called and settle to the actual cost, the two balances
(monthly spent first, lapsing at each renewal), migration of old balances, and idempotency
keys bound to their request. A property test drives the ledger through any sequence of
grants, holds, settles, releases, spends and renewals."""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit.billing import credits

from conduit.billing import pricing

from conduit.billing import stripe_events
from conduit.platform.errors import ConduitError
from conduit.models import Message, ModelTurn, Usage
from conduit.models.echo import EchoModel
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.base import Repository, to_item
from conduit.platform.settings import get_settings
from conduit.platform.tiers import ModelPrice, TiersFileError, get_tiers, load_tiers
from shared.local.workers import LocalLambdaContext

from .helpers import open_account
from .stripe_server import event, invoice_object, signed

ROOT = Path(__file__).resolve().parents[1]
FAR = time.time() + 3600  # a lease nobody reaches in a test


def priced_tiers(tmp_path: Path, **overrides) -> Path:
    """The project's tiers file with `local:echo` priced at 0.01 credit a token (markup 1):
    "hello" holds 42 credits (6 input tokens estimated + max_tokens 4096) and costs 1.
    Unpriced turns cost 5."""
    tiers = json.loads((ROOT / "shared" / "tiers.json").read_text())
    tiers["pricing"] = {
        "creditValueUsd": 0.001,
        "markup": 1,
        "models": {"local:echo": {"inputUsdPerMTok": 10, "outputUsdPerMTok": 10}},
    }
    tiers["costs"]["modelTurn"] = 5  # unpriced turns: never the 1 a priced "hello" costs
    tiers.update(overrides)
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps(tiers))
    return path


@pytest.fixture
def priced(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("TIERS_FILE", str(priced_tiers(tmp_path)))
    get_tiers.cache_clear()
    get_settings.cache_clear()
    yield
    get_tiers.cache_clear()
    get_settings.cache_clear()


def account_item(account_id: str) -> dict:
    return Repository().get(f"ACCOUNT#{account_id}", "ACCOUNT")


def state(account_id: str) -> tuple[int, int, int]:
    """(monthly, purchased, held) as stored."""
    item = account_item(account_id)
    assert item["credits"] == item["monthlyCredits"] + item["purchasedCredits"]
    return int(item["monthlyCredits"]), int(item["purchasedCredits"]), int(item["heldCredits"])


def ledger(account_id: str) -> list[tuple[int, str]]:
    return [(entry["delta"], entry["reason"]) for entry in credits.ledger_page(account_id, 100).items]


def whole_ledger_sum(account_id: str) -> int:
    total, cursor = 0, None
    while True:
        page = credits.ledger_page(account_id, limit=100, cursor=cursor)
        total += sum(entry["delta"] for entry in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return total


HELLO = [Message(role="user", content="hello")]


# --- the formula ------------------------------------------------------------------------------


def test_the_formula_is_decimal_with_a_minimum_of_one(priced):
    price = get_tiers().pricing.models["local:echo"]
    assert pricing.turn_cost(price, Usage(0, 0)) == 1  # at least 1
    assert pricing.turn_cost(price, Usage(2, 3)) == 1  # 0.05 credits, rounded up
    assert pricing.turn_cost(price, Usage(1000, 1002)) == 21  # 20.02 → 21
    assert pricing.turn_cost(price, Usage(1000, 1000)) == 20  # exactly 20: no rounding up past it


def test_decimal_arithmetic_where_floats_would_round_up(aws, tmp_path, monkeypatch):
    # 3M tokens at $0.1 = $0.3, at $0.3 a credit: exactly 1 credit. In floats 0.1 × 3 / 0.3 is
    # 1.0000000000000002, which a ceiling turns into 2.
    path = priced_tiers(tmp_path)
    tiers = json.loads(path.read_text())
    tiers["pricing"] = {"creditValueUsd": 0.3, "markup": 1, "models": {"openai:gpt-x": {"inputUsdPerMTok": 0.1, "outputUsdPerMTok": 0}}}
    path.write_text(json.dumps(tiers))
    monkeypatch.setenv("TIERS_FILE", str(path))
    get_tiers.cache_clear()
    get_settings.cache_clear()
    try:
        assert pricing.turn_cost(ModelPrice(inputUsdPerMTok=Decimal("0.1"), outputUsdPerMTok=0), Usage(3_000_000, 0)) == 1
        assert pricing.turn_cost(pricing.price_of("openai:gpt-x"), Usage(6_000_001, 0)) == 3  # just over 2: 3
    finally:
        get_tiers.cache_clear()
        get_settings.cache_clear()


def test_the_markup_multiplies(aws, tmp_path, monkeypatch):
    path = priced_tiers(tmp_path)
    tiers = json.loads(path.read_text())
    tiers["pricing"]["markup"] = 1.5
    path.write_text(json.dumps(tiers))
    monkeypatch.setenv("TIERS_FILE", str(path))
    get_tiers.cache_clear()
    get_settings.cache_clear()
    try:
        assert pricing.turn_cost(pricing.price_of("local:echo"), Usage(1000, 1000)) == 30
    finally:
        get_tiers.cache_clear()
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"creditValueUsd": 0, "markup": 1, "models": {}}, "pricing.creditValueUsd"),
        ({"creditValueUsd": "0.01", "markup": 1, "models": {}}, "pricing.creditValueUsd: Value error, must be a JSON number"),
        ({"creditValueUsd": 0.01, "markup": True, "models": {}}, "pricing.markup"),
        ({"creditValueUsd": 0.01, "markup": 1}, "pricing.models: Field required"),
        ({"creditValueUsd": 0.01, "markup": 1, "models": {"gpt-4o": {"inputUsdPerMTok": 1, "outputUsdPerMTok": 1}}}, "provider:model"),
        ({"creditValueUsd": 0.01, "markup": 1, "models": {"openai:x": {"inputUsdPerMTok": -1, "outputUsdPerMTok": 1}}}, "inputUsdPerMTok"),
        ({"creditValueUsd": 0.01, "markup": 1, "models": {"openai:x": {"inputUsdPerMTok": 1}}}, "outputUsdPerMTok: Field required"),
        ({"creditValueUsd": 0.01, "markup": 1, "models": {}, "currency": "EUR"}, "pricing.currency"),
    ],
)
def test_a_bad_pricing_block_stops_the_cold_start(tmp_path, block, message):
    path = priced_tiers(tmp_path, pricing=block)
    with pytest.raises(TiersFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_tiers(path)


def test_the_shipped_tiers_file_prices_real_models():
    shipped = load_tiers(ROOT / "shared" / "tiers.json").pricing
    assert shipped is not None and "openai:gpt-4o-mini" in shipped.models and "local:echo" not in shipped.models


# --- holds ------------------------------------------------------------------------------------


def test_a_priced_turn_holds_its_most_then_charges_what_it_used(priced):
    account_id = open_account(100)
    with credits.hold_model_turn(account_id, "local:echo", HELLO, [], "chat: model turn 1", "x:1", FAR) as hold:
        assert hold.amount == 42 and state(account_id) == (0, 100, 42)
        with pytest.raises(ConduitError) as refused:  # the held credits are not there to spend
            credits.spend(account_id, 59, "tool", "x:tool")
        assert refused.value.code == "NO_CREDITS"
        turn = EchoModel().complete("echo", HELLO, [], deadline=time.monotonic() + 5)
        assert turn.usage == Usage(2, 3)
        assert hold.settle(turn.usage) == 1
    assert state(account_id) == (0, 99, 0)
    assert ledger(account_id) == [(-1, "chat: model turn 1"), (100, "signup")]  # one entry, the actual cost
    assert credits.open_holds(account_id) == []


def test_a_balance_that_cannot_cover_the_hold_is_refused_before_the_provider(priced):
    account_id = open_account(41)
    with pytest.raises(ConduitError) as refused:
        credits.hold_model_turn(account_id, "local:echo", HELLO, [], "chat: model turn 1", "x:1", FAR)
    assert refused.value.code == "NO_CREDITS"
    assert state(account_id) == (0, 41, 0) and credits.open_holds(account_id) == []


def _counting_requests() -> list[str]:
    from conduit.platform.aws import dynamodb_client

    calls: list[str] = []
    dynamodb_client().meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    return calls


def test_a_turn_from_the_gates_account_item_writes_without_reading(priced):
    # A chat's first turn starts from the account the gate read: hold and settle, one write each.
    account_id = open_account(100)
    seen = account_item(account_id)
    calls = _counting_requests()
    with credits.hold_model_turn(account_id, "local:echo", HELLO, [], "chat: model turn 1", "x:1", FAR, account_item=seen) as hold:
        assert hold.settle(Usage(2, 3)) == 1
    assert calls == ["TransactWriteItems", "TransactWriteItems"]
    assert state(account_id) == (0, 99, 0) and credits.open_holds(account_id) == []
    assert ledger(account_id) == [(-1, "chat: model turn 1"), (100, "signup")]


def test_a_stale_account_item_costs_a_failed_write_never_a_wrong_balance_or_refusal(priced):
    account_id = open_account(41)
    stale = account_item(account_id)  # 41 available: this copy alone would refuse the 42-credit hold
    credits.grant(account_id, 10, "gift", "gift:1")  # since the gate's read
    with credits.hold_model_turn(account_id, "local:echo", HELLO, [], "chat: model turn 1", "x:1", FAR, account_item=stale) as hold:
        assert hold.settle(Usage(2, 3)) == 1
    assert state(account_id) == (0, 50, 0)
    assert ledger(account_id) == [(-1, "chat: model turn 1"), (10, "gift"), (41, "signup")]


def test_an_unpriced_turn_from_a_stale_account_item_spends_once_from_the_real_balance(aws):
    account_id = open_account(5)
    stale = account_item(account_id)
    credits.spend(account_id, 2, "tool", "t:1")  # since the gate's read
    calls = _counting_requests()
    credits.hold_model_turn(account_id, "local:echo", HELLO, [], "chat: model turn 1", "x:1", FAR, account_item=stale)
    assert calls == ["TransactWriteItems", "TransactGetItems", "TransactWriteItems"]  # the stale write failed, then read + write
    assert state(account_id) == (0, 2, 0)
    assert ledger(account_id) == [(-1, "chat: model turn 1"), (-2, "tool"), (5, "signup")]


def test_a_spend_from_the_gates_account_item_writes_without_reading(aws):
    # An MCP tools/call's charge: its request's only credits write, from the account the gate read.
    account_id = open_account(5)
    seen = account_item(account_id)
    calls = _counting_requests()
    assert credits.spend(account_id, 2, "mcp: tool t", "m:1", account_item=seen) == 3
    assert calls == ["TransactWriteItems"]
    assert state(account_id) == (0, 3, 0) and ledger(account_id) == [(-2, "mcp: tool t"), (5, "signup")]


@pytest.mark.parametrize("since_the_read", ["spent", "granted", "the same key spent"])
def test_a_spend_from_a_stale_account_item_is_decided_on_the_real_balance(aws, since_the_read):
    account_id = open_account(2)
    stale = account_item(account_id)  # 2 available
    if since_the_read == "spent":
        credits.spend(account_id, 1, "other", "o:1")  # 1 left: the stale copy would allow 2
        with pytest.raises(ConduitError) as refused:
            credits.spend(account_id, 2, "mcp: tool t", "m:1", account_item=stale)
        assert refused.value.code == "NO_CREDITS"
        assert state(account_id) == (0, 1, 0) and ledger(account_id) == [(-1, "other"), (2, "signup")]
    elif since_the_read == "granted":
        credits.grant(account_id, 5, "gift", "g:1")  # 7: the stale copy alone would refuse 3
        assert credits.spend(account_id, 3, "mcp: tool t", "m:1", account_item=stale) == 4
        assert ledger(account_id) == [(-3, "mcp: tool t"), (5, "gift"), (2, "signup")]
    else:
        credits.spend(account_id, 1, "mcp: tool t", "m:1")  # a retry of the same call finds it paid
        assert credits.spend(account_id, 1, "mcp: tool t", "m:1", account_item=stale) == 1
        assert state(account_id) == (0, 1, 0) and ledger(account_id) == [(-1, "mcp: tool t"), (2, "signup")]


@pytest.mark.parametrize("failure", ["MODEL_ERROR", "CHAT_TIMEOUT", "STREAM_ABORTED"])
def test_a_turn_that_ends_without_an_answer_releases_its_hold(priced, failure):
    account_id = open_account(100)
    with pytest.raises(ConduitError), credits.hold_model_turn(account_id, "local:echo", HELLO, [], "r", "x:1", FAR):
        raise ConduitError(failure)
    assert state(account_id) == (0, 100, 0) and credits.open_holds(account_id) == []
    assert ledger(account_id) == [(100, "signup")]


def test_a_retried_step_takes_over_its_hold_and_pays_once(priced):
    account_id = open_account(100)
    credits.hold_model_turn(account_id, "local:echo", HELLO, [], "agent run: model turn 1", "run_1:model:1", FAR)  # then killed
    retry = credits.hold_model_turn(account_id, "local:echo", HELLO, [], "agent run: model turn 1", "run_1:model:1", FAR)
    assert state(account_id) == (0, 100, 42)  # one hold, not two
    assert retry.settle(Usage(2, 3)) == 1
    again = credits.hold_model_turn(account_id, "local:echo", HELLO, [], "agent run: model turn 1", "run_1:model:1", FAR)
    assert again.state == "settled" and again.settle(Usage(5000, 5000)) == 1  # settled already: charged once
    assert state(account_id) == (0, 99, 0)
    assert ledger(account_id) == [(-1, "agent run: model turn 1"), (100, "signup")]


def test_a_hold_past_its_lease_is_taken_back_when_it_blocks(priced):
    account_id = open_account(50)
    credits.hold_model_turn(account_id, "local:echo", HELLO, [], "r", "dead:1", time.time() - 1)  # its process died
    assert state(account_id) == (0, 50, 42)
    with credits.hold_model_turn(account_id, "local:echo", HELLO, [], "r", "live:1", FAR) as hold:
        hold.settle(Usage(2, 3))
    assert state(account_id) == (0, 49, 0) and credits.open_holds(account_id) == []


def test_a_turn_costing_more_than_its_hold_is_charged_as_far_as_the_balance_goes(priced):
    account_id = open_account(45)
    with credits.hold_model_turn(account_id, "local:echo", HELLO, [], "r", "x:1", FAR) as hold:
        assert hold.settle(Usage(2_000_000, 0)) == 45  # 20,000 credits of usage; 45 there
    assert state(account_id) == (0, 0, 0)
    assert ledger(account_id)[0] == (-45, "r")


def test_an_unpriced_model_costs_the_flat_model_turn(priced):
    account_id = open_account(100)
    with credits.hold_model_turn(account_id, "openai:unlisted", HELLO, [], "r", "x:1", FAR) as hold:
        assert hold.state == "prepaid" and hold.cost == get_tiers().costs.model_turn
    assert state(account_id) == (0, 100 - get_tiers().costs.model_turn, 0)


# --- two balances -------------------------------------------------------------------------------


def test_monthly_credits_are_spent_first_and_lapse_at_renewal(priced):
    account_id = open_account(100)
    assert credits.renew(account_id, 30, "monthly credits (pro)", "stripe:in_1") == 130
    assert state(account_id) == (30, 100, 0)
    credits.spend(account_id, 20, "tool", "t1")
    assert state(account_id) == (10, 100, 0)
    with credits.hold_model_turn(account_id, "local:echo", [Message("user", "x" * 4000)], [], "turn", "t2", FAR) as hold:
        assert hold.settle(Usage(1000, 1002)) == 21  # 10 monthly, then 11 purchased
    assert state(account_id) == (0, 89, 0)
    credits.renew(account_id, 30, "monthly credits (pro)", "stripe:in_2")
    credits.spend(account_id, 5, "tool", "t3")
    assert credits.renew(account_id, 30, "monthly credits (pro)", "stripe:in_3") == 119  # 25 lapse, 30 granted
    assert credits.renew(account_id, 30, "monthly credits (pro)", "stripe:in_3") == 119  # the same invoice: once
    assert ledger(account_id)[:3] == [(30, "monthly credits (pro)"), (-25, "monthly credits lapsed"), (-5, "tool")]
    assert whole_ledger_sum(account_id) == 119 and state(account_id) == (30, 89, 0)


def test_purchases_and_admin_grants_never_lapse(priced):
    account_id = open_account(0)
    credits.renew(account_id, 50, "monthly", "in_1")
    credits.grant(account_id, 250, "credit purchase", "stripe:pi_1")
    credits.adjust(account_id, 7, "admin", "admin:1")
    credits.renew(account_id, 50, "monthly", "in_2")
    assert state(account_id) == (50, 257, 0)
    credits.adjust(account_id, -60, "admin correction", "admin:2")  # monthly first, here too
    assert state(account_id) == (0, 247, 0)


def test_an_old_balance_reads_as_purchased_credits(priced):
    account_id = f"usr_{uuid.uuid4().hex[:12]}"
    old = {
        "PK": f"ACCOUNT#{account_id}", "SK": "ACCOUNT", "accountId": account_id, "kind": "personal", "ownerId": account_id,
        "tier": "pro", "credits": 70, "subscriptionStatus": "active", "createdAt": "2026-01-01T00:00:00.000000Z",
        "balanceChangedAt": "2026-01-01T00:00:00.000000Z",
    }
    Repository().client.put_item(TableName=Repository().table_name, Item=to_item(old))
    account = AccountsRepository().get(account_id)
    assert (account.credits, account.monthly_credits, account.purchased_credits) == (70, 0, 70)
    assert credits.balances(account_id) == {"credits": 70, "monthlyCredits": 0, "purchasedCredits": 70}
    credits.renew(account_id, 10, "monthly", "in_1")  # the old credits do not lapse
    credits.spend(account_id, 15, "tool", "t1")
    assert state(account_id) == (0, 65, 0)


# --- idempotency keys are bound to their request ------------------------------------------------


def test_a_key_reused_for_another_request_is_refused_and_changes_nothing(priced):
    account_id = open_account(100)
    assert credits.adjust(account_id, 50, "goodwill", "admin:k1") == 150
    assert credits.adjust(account_id, 50, "goodwill", "admin:k1") == 150  # a retry: the first outcome
    for delta, reason in ((500, "goodwill"), (50, "another reason"), (-50, "goodwill")):
        with pytest.raises(ConduitError) as reused:
            credits.adjust(account_id, delta, reason, "admin:k1")
        assert reused.value.code == "IDEMPOTENCY_KEY_REUSED" and reused.value.status == 409
    assert state(account_id) == (0, 150, 0) and len(ledger(account_id)) == 2


# --- renewals from Stripe -------------------------------------------------------------------------


def deliver(stripe_event: dict) -> dict:
    body, headers = signed(stripe_event)
    return stripe_events.handle(body, headers["Stripe-Signature"], LocalLambdaContext("StripeWebhookFunction", 512, 29, "test"))


def test_signed_invoice_paid_renewals_lapse_and_grant(priced):
    account_id = open_account(100)
    metadata = {"accountId": account_id, "tier": "pro"}
    monthly = get_tiers().tier("pro").monthly_credits
    first = invoice_object("cus_x", "sub_7", "subscription_create", metadata)
    assert deliver(event("invoice.paid", first))["outcome"] == "monthly credits granted"
    credits.spend(account_id, 1000, "usage", "u1")
    assert state(account_id) == (monthly - 1000, 100, 0)
    renewal = invoice_object("cus_x", "sub_7", "subscription_cycle", metadata)
    deliver(event("invoice.paid", renewal))
    deliver(event("invoice.paid", renewal))  # another event for the same invoice: once
    assert state(account_id) == (monthly, 100, 0)
    assert ledger(account_id)[:3] == [
        (monthly, "monthly credits (pro)"),
        (-(monthly - 1000), "monthly credits lapsed"),
        (-1000, "usage"),
    ]
    assert whole_ledger_sum(account_id) == monthly + 100


# --- the property ---------------------------------------------------------------------------------

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.integers(1, 60)),
        st.tuples(st.just("adjust"), st.integers(-60, 60).filter(bool)),
        st.tuples(st.just("renew"), st.integers(0, 60)),
        st.tuples(st.just("spend"), st.integers(1, 60)),
        st.tuples(st.just("hold"), st.integers(1, 60)),
        st.tuples(st.just("settle"), st.integers(0, 5), st.integers(1, 80)),
        st.tuples(st.just("release"), st.integers(0, 5)),
    ),
    max_size=14,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(signup=st.integers(0, 60), operations=OPERATIONS)
def test_any_sequence_keeps_the_two_balances_exact(priced, signup, operations):
    """A model of the rules beside the real ledger: after every operation they agree, the sum is
    the ledger's sum, nothing is negative, and monthly credits go first."""
    account_id = open_account(signup)
    monthly, purchased, holds = 0, signup, {}  # holds: key → amount

    def take(amount: int) -> None:
        nonlocal monthly, purchased
        from_monthly = min(monthly, amount)
        monthly, purchased = monthly - from_monthly, purchased - (amount - from_monthly)

    for number, (kind, *args) in enumerate(operations):
        key = f"op{number}"
        available = monthly + purchased - sum(holds.values())
        refused = False
        try:
            if kind == "grant":
                credits.grant(account_id, args[0], "grant", key)
                purchased += args[0]
            elif kind == "adjust":
                refused = monthly + purchased + args[0] < 0
                credits.adjust(account_id, args[0], "adjust", key)
                take(-args[0]) if args[0] < 0 else None
                purchased += max(0, args[0])
            elif kind == "renew":
                credits.renew(account_id, args[0], "renew", key)
                monthly = args[0]
            elif kind == "spend":
                refused = args[0] > available
                credits.spend(account_id, args[0], "spend", key)
                take(args[0])
            elif kind == "hold":
                refused = args[0] > available
                credits._hold(account_id, args[0], "hold", key, FAR)
                holds[key] = args[0]
            elif kind in ("settle", "release") and holds:
                held_key = sorted(holds)[args[0] % len(holds)]
                if kind == "release":
                    credits._release(account_id, held_key)
                else:
                    covered = max(0, monthly + purchased - (sum(holds.values()) - holds[held_key]))
                    assert credits._settle(account_id, held_key, "settle", args[1]) == min(args[1], covered)
                    take(min(args[1], covered))
                del holds[held_key]
        except ConduitError as error:
            assert error.code == "NO_CREDITS" and refused, (kind, args)
        else:
            assert not refused, (kind, args)
        assert state(account_id) == (monthly, purchased, sum(holds.values()))
        assert monthly >= 0 and purchased >= 0
        assert whole_ledger_sum(account_id) == monthly + purchased
        assert sorted(hold["key"] for hold in credits.open_holds(account_id)) == sorted(holds)
    for held_key in list(holds):
        credits._release(account_id, held_key)
    assert state(account_id)[2] == 0 and credits.open_holds(account_id) == []


def test_echo_reports_a_deterministic_usage():
    model = EchoModel()
    turn = model.complete("echo", HELLO, [], deadline=time.monotonic() + 5)
    assert turn == ModelTurn(text="echo: hello", usage=Usage(2, 3))
    assert model.complete("echo", HELLO, [], deadline=time.monotonic() + 5).usage == turn.usage


def test_a_step_retried_after_its_model_was_priced_or_unpriced_pays_once(priced):
    account_id = open_account(100)
    flat = get_tiers().costs.model_turn
    credits.hold_model_turn(account_id, "openai:unlisted", HELLO, [], "agent run: model turn 1", "run_2:model:1", FAR)
    retry = credits.hold_model_turn(account_id, "local:echo", HELLO, [], "agent run: model turn 1", "run_2:model:1", FAR)
    assert retry.state == "settled" and retry.cost == flat
    with credits.hold_model_turn(account_id, "local:echo", HELLO, [], "agent run: model turn 2", "run_2:model:2", FAR) as hold:
        hold.settle(Usage(2, 3))
    again = credits.hold_model_turn(account_id, "openai:unlisted", HELLO, [], "agent run: model turn 2", "run_2:model:2", FAR)
    assert again.cost == 1  # the flat spend replays the settled turn's marker: nothing more is charged
    assert state(account_id) == (0, 100 - flat - 1, 0)
