"""Accounts and the credit ledger: exact, never negative, idempotent, safe under concurrency."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit import credits
from conduit.errors import ConduitError
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.base import ConditionsFailed, write_transaction


def open_account(signup_credits: int = 10) -> str:
    accounts = AccountsRepository()
    account_id = uuid.uuid4().hex
    items = accounts.new_account_items(
        account_id, kind="personal", owner_id="user-1", signup_credits=signup_credits, now=datetime.now(UTC)
    )
    write_transaction(accounts.client, items)
    return account_id


def balance(account_id: str) -> int:
    return AccountsRepository().get(account_id).credits


def whole_ledger(account_id: str) -> list[dict]:
    """Every ledger entry, oldest first."""
    entries, cursor = [], None
    while True:
        page = credits.ledger_page(account_id, limit=100, cursor=cursor)
        entries += page.items
        cursor = page.next_cursor
        if cursor is None:
            return entries[::-1]


def assert_ledger_explains_balance(account_id: str) -> None:
    """Each entry's balance = the previous one + its delta, never negative, ending at the account's balance."""
    running = 0
    for entry in whole_ledger(account_id):
        running += entry["delta"]
        assert entry["balance"] == running >= 0
    assert balance(account_id) == running


def error_code(call, *args) -> str:
    with pytest.raises(ConduitError) as raised:
        call(*args)
    return raised.value.code


# --- accounts ------------------------------------------------------------------


def test_a_new_account_starts_with_its_signup_grant_in_the_ledger(aws):
    account_id = open_account(100)
    account = AccountsRepository().get(account_id)
    assert (account.kind, account.owner_id, account.tier, account.credits, account.subscription_status) == (
        "personal", "user-1", "free", 100, "none"
    )
    [entry] = credits.ledger_page(account_id).items
    assert set(entry) == {"id", "delta", "balance", "reason", "createdAt"}
    assert (entry["delta"], entry["balance"], entry["reason"]) == (100, 100, "signup")


def test_an_account_without_signup_credits_has_an_empty_ledger(aws):
    account_id = open_account(0)
    assert balance(account_id) == 0 and credits.ledger_page(account_id).items == []


def test_an_account_is_created_once(aws):
    accounts = AccountsRepository()
    items = accounts.new_account_items("acc", kind="workspace", owner_id="u", signup_credits=0, now=datetime.now(UTC))
    write_transaction(accounts.client, items)
    with pytest.raises(ConditionsFailed) as raised:
        write_transaction(accounts.client, items)
    assert raised.value.indexes == {0}


def test_tier_and_subscription_status_change_on_existing_accounts_only(aws):
    accounts, account_id = AccountsRepository(), open_account()
    assert accounts.set_tier(account_id, "pro").tier == "pro"
    assert accounts.set_subscription_status(account_id, "past_due").subscription_status == "past_due"
    assert accounts.get(account_id).tier == "pro"
    assert error_code(accounts.set_tier, "missing", "pro") == "NOT_FOUND"
    assert error_code(accounts.set_subscription_status, "missing", "active") == "NOT_FOUND"
    assert error_code(accounts.set_tier, account_id, "gold") == "VALIDATION_ERROR"
    assert error_code(accounts.set_subscription_status, account_id, "late") == "VALIDATION_ERROR"
    assert accounts.get("missing") is None


# --- spend, grant, adjust ----------------------------------------------------------


def test_spend_and_grant_move_the_balance_and_write_the_ledger_newest_first(aws):
    account_id = open_account(10)
    assert credits.spend(account_id, 3, "model turn", "turn-1") == 7
    assert credits.grant(account_id, 250, "credit pack", "pi_1") == 257
    assert credits.adjust(account_id, -7, "admin correction", "admin-1") == 250
    page = credits.ledger_page(account_id, limit=2)
    assert [(entry["delta"], entry["balance"], entry["reason"]) for entry in page.items] == [
        (-7, 250, "admin correction"), (250, 257, "credit pack")
    ]
    following = credits.ledger_page(account_id, limit=2, cursor=page.next_cursor)
    assert [entry["delta"] for entry in following.items] == [-3, 10] and following.next_cursor is None
    assert_ledger_explains_balance(account_id)


def test_a_balance_that_cannot_cover_the_charge_is_no_credits_and_nothing_changes(aws):
    account_id = open_account(5)
    assert error_code(credits.spend, account_id, 6, "model turn", "turn-1") == "NO_CREDITS"
    assert error_code(credits.adjust, account_id, -6, "admin", "admin-1") == "NO_CREDITS"
    assert error_code(credits.hold, account_id, 6, "run-1") == "NO_CREDITS"
    assert balance(account_id) == 5 and len(whole_ledger(account_id)) == 1
    assert credits.spend(account_id, 5, "model turn", "turn-1") == 0  # the refused key was not used up


def test_an_unknown_account_is_not_found(aws):
    assert error_code(credits.spend, "missing", 1, "model turn", "k") == "NOT_FOUND"
    assert error_code(credits.grant, "missing", 1, "pack", "k") == "NOT_FOUND"


NOT_POSITIVE_INTEGERS = [0, -1, 1.5, 2.0, True, False, "3", None]
OPERATIONS = {
    "spend": lambda account_id, amount: credits.spend(account_id, amount, "model turn", "k"),
    "grant": lambda account_id, amount: credits.grant(account_id, amount, "pack", "k"),
    "hold": lambda account_id, amount: credits.hold(account_id, amount, "k"),
    "adjust": lambda account_id, delta: credits.adjust(account_id, delta, "admin", "k"),
}
REFUSED = [(name, "amount", amount) for name in ("spend", "grant", "hold") for amount in NOT_POSITIVE_INTEGERS] + [
    ("adjust", "delta", delta) for delta in NOT_POSITIVE_INTEGERS if delta != -1  # a negative adjustment is valid
]


@pytest.mark.parametrize(("operation", "field", "amount"), REFUSED, ids=lambda value: repr(value))
def test_an_amount_that_is_not_a_positive_integer_is_refused_and_nothing_is_written(aws, operation, field, amount):
    account_id = open_account(10)
    with pytest.raises(ConduitError) as raised:
        OPERATIONS[operation](account_id, amount)
    assert raised.value.code == "VALIDATION_ERROR"
    assert raised.value.details[0]["field"] == field
    assert balance(account_id) == 10 and len(whole_ledger(account_id)) == 1
    assert OPERATIONS[operation](account_id, 1)  # the key was not used up: a valid call still applies


@pytest.mark.parametrize("actual", [-1, True, 1.0, "1"], ids=repr)
def test_a_settle_amount_that_is_not_a_non_negative_integer_is_refused(aws, actual):
    account_id = open_account(10)
    hold_id = credits.hold(account_id, 4, "run-1")
    with pytest.raises(ConduitError) as raised:
        credits.settle(account_id, hold_id, actual)
    assert raised.value.code == "VALIDATION_ERROR" and raised.value.details[0]["field"] == "actual"
    assert balance(account_id) == 6 and len(whole_ledger(account_id)) == 2


@pytest.mark.parametrize(("reason", "key"), [("", "k"), ("r", ""), ("r", None), (None, "k"), ("r", "k" * 256)])
def test_a_missing_reason_or_key_is_refused(aws, reason, key):
    account_id = open_account(10)
    assert error_code(credits.spend, account_id, 1, reason, key) == "VALIDATION_ERROR"
    assert balance(account_id) == 10


# --- idempotency ---------------------------------------------------------------------


def test_a_retry_returns_the_original_balance_and_writes_one_ledger_entry(aws):
    account_id = open_account(10)
    assert credits.spend(account_id, 3, "model turn", "turn-1") == 7
    assert credits.spend(account_id, 3, "model turn", "turn-1") == 7
    assert credits.grant(account_id, 5, "pack", "pi_1") == 12
    assert credits.spend(account_id, 3, "model turn", "turn-1") == 7  # the original outcome, not a new charge
    assert credits.grant(account_id, 5, "pack", "pi_1") == 12
    assert balance(account_id) == 12
    assert [entry["delta"] for entry in whole_ledger(account_id)] == [10, -3, 5]


def test_a_retry_after_the_balance_ran_out_still_returns_the_original(aws):
    account_id = open_account(3)
    assert credits.spend(account_id, 3, "model turn", "turn-1") == 0
    assert credits.spend(account_id, 3, "model turn", "turn-1") == 0  # not NO_CREDITS


def test_parallel_retries_of_one_key_apply_once(aws):
    account_id = open_account(10)
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda _: credits.spend(account_id, 4, "model turn", "turn-1"), range(10)))
    assert results == [6] * 10
    assert balance(account_id) == 6 and len(whole_ledger(account_id)) == 2


# --- holds ------------------------------------------------------------------------------


def test_a_run_is_charged_what_it_used_and_gets_the_rest_back(aws):
    account_id = open_account(10)
    hold_id = credits.hold(account_id, 6, "run-1")
    assert credits.hold(account_id, 6, "run-1") == hold_id  # retry: same hold, nothing more taken
    assert balance(account_id) == 4
    assert credits.settle(account_id, hold_id, 2) == 8
    assert credits.settle(account_id, hold_id, 2) == 8  # idempotent
    assert credits.release(account_id, hold_id) == 8  # finalized already: the settle stands
    assert [entry["delta"] for entry in whole_ledger(account_id)] == [10, -6, 4]
    assert_ledger_explains_balance(account_id)


def test_a_run_cannot_spend_more_than_its_hold(aws):
    account_id = open_account(10)
    hold_id = credits.hold(account_id, 5, "run-1")
    assert credits.settle(account_id, hold_id, 50) == 5
    assert [entry["delta"] for entry in whole_ledger(account_id)] == [10, -5]  # nothing to return, no entry


def test_release_returns_the_whole_hold_once(aws):
    account_id = open_account(10)
    hold_id = credits.hold(account_id, 5, "run-1")
    credits.spend(account_id, 2, "model turn", "turn-1")
    assert credits.release(account_id, hold_id) == 8
    assert credits.release(account_id, hold_id) == 8
    assert credits.settle(account_id, hold_id, 5) == 8  # released already: no charge
    assert balance(account_id) == 8
    assert_ledger_explains_balance(account_id)


def test_an_unknown_hold_is_not_found(aws):
    account_id = open_account(10)
    assert error_code(credits.settle, account_id, "nope", 1) == "NOT_FOUND"
    assert error_code(credits.release, account_id, "nope") == "NOT_FOUND"


# --- concurrency ---------------------------------------------------------------------------


def test_parallel_spends_admit_exactly_what_the_balance_covers(aws):
    account_id = open_account(7)

    def spend_one(number: int) -> str:
        try:
            credits.spend(account_id, 1, "model turn", f"turn-{number}")
            return "spent"
        except ConduitError as error:
            return error.code

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(spend_one, range(20)))
    assert outcomes.count("spent") == 7 and outcomes.count("NO_CREDITS") == 13
    assert balance(account_id) == 0
    assert len(whole_ledger(account_id)) == 8
    assert_ledger_explains_balance(account_id)


def test_parallel_mixed_changes_keep_the_ledger_exact(aws):
    account_id = open_account(20)

    def change(number: int) -> None:
        try:
            if number % 3 == 0:
                credits.grant(account_id, 2, "pack", f"grant-{number}")
            elif number % 3 == 1:
                credits.settle(account_id, credits.hold(account_id, 3, f"run-{number}"), 1)
            else:
                credits.spend(account_id, 2, "model turn", f"turn-{number}")
        except ConduitError as error:
            assert error.code == "NO_CREDITS"

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(change, range(30)))
    assert_ledger_explains_balance(account_id)


# --- the property ---------------------------------------------------------------------------

# Small amounts against a balance of up to 60, so that changes mostly succeed
# and runs often use more than they hold; holds and settles appear twice to
# weigh them up, since a settle needs an open hold before it.
hold_step = st.tuples(st.just("hold"), st.integers(1, 10))
used = st.integers(0, 10) | st.integers(11, 30)  # at most a hold, or more than any hold
settle_step = st.tuples(st.just("settle"), st.tuples(st.integers(0, 5), used))  # (which hold, credits used)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("spend"), st.integers(1, 10)),
        st.tuples(st.just("grant"), st.integers(1, 20)),
        st.tuples(st.just("adjust"), st.integers(-10, 10).filter(bool)),
        hold_step,
        hold_step,
        settle_step,
        settle_step,
        st.tuples(st.just("release"), st.integers(0, 5)),
        st.tuples(st.just("retry"), st.integers(0, 100)),  # repeat an earlier successful call, same key
    ),
    min_size=8,
    max_size=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(signup=st.integers(0, 60), steps=operations)
def test_the_balance_is_always_the_sum_of_the_ledger_and_never_negative(aws, signup, steps):
    account_id = open_account(signup)  # a fresh account per example: no state leaks between examples
    expected = signup
    holds: list[dict] = []  # {id, amount, result (balance after finalizing, once finalized)}
    done: list[tuple] = []  # successful keyed calls: (function, args, result), for retries

    def keyed(function, *args):
        result = function(account_id, *args)
        done.append((function, args, result))
        return result

    for number, (kind, value) in enumerate(steps):
        key = f"key-{number}"
        try:
            if kind in ("spend", "grant", "adjust"):
                delta = {"spend": -value, "grant": value, "adjust": value}[kind]
                assert keyed(getattr(credits, kind), value, kind, key) == expected + delta
                expected += delta
            elif kind == "hold":
                holds.append({"id": keyed(credits.hold, value, key), "amount": value, "result": None})
                expected -= value
            elif kind in ("settle", "release") and holds:
                which, used = value if kind == "settle" else (value, 0)
                held = holds[which % len(holds)]
                if held["result"] is None:
                    expected += held["amount"] - min(used, held["amount"])
                    held["result"] = expected
                outcome = (
                    credits.settle(account_id, held["id"], used)
                    if kind == "settle"
                    else credits.release(account_id, held["id"])
                )
                assert outcome == held["result"]
            elif kind == "retry" and done:
                function, args, result = done[value % len(done)]
                assert function(account_id, *args) == result  # the original outcome, nothing changed
        except ConduitError as error:
            assert error.code == "NO_CREDITS"
            assert expected + {"spend": -value, "adjust": value, "hold": -value}.get(kind, 0) < 0
        assert balance(account_id) == expected >= 0
    assert_ledger_explains_balance(account_id)
