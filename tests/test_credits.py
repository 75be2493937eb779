"""Accounts and the credit ledger: exact, never negative, idempotent, safe under concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit.billing import credits
from conduit.platform.errors import ConduitError
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.base import ConditionsFailed, write_transaction

from .helpers import open_account


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
        "personal", account_id, "free", 100, "none"
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
    accounts, account_id = AccountsRepository(), open_account(10)
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
    assert balance(account_id) == 5 and len(whole_ledger(account_id)) == 1
    assert credits.spend(account_id, 5, "model turn", "turn-1") == 0  # the refused key was not used up


def test_an_unknown_account_is_not_found(aws):
    assert error_code(credits.spend, "missing", 1, "model turn", "k") == "NOT_FOUND"
    assert error_code(credits.grant, "missing", 1, "pack", "k") == "NOT_FOUND"


NOT_POSITIVE_INTEGERS = [0, -1, 1.5, 2.0, True, False, "3", None]
OPERATIONS = {
    "spend": lambda account_id, amount: credits.spend(account_id, amount, "model turn", "k"),
    "grant": lambda account_id, amount: credits.grant(account_id, amount, "pack", "k"),
    "adjust": lambda account_id, delta: credits.adjust(account_id, delta, "admin", "k"),
}
REFUSED = [(name, "amount", amount) for name in ("spend", "grant") for amount in NOT_POSITIVE_INTEGERS] + [
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
                credits.adjust(account_id, -1, "admin correction", f"adjust-{number}")
            else:
                credits.spend(account_id, 2, "model turn", f"turn-{number}")
        except ConduitError as error:
            assert error.code == "NO_CREDITS"

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(change, range(30)))
    assert_ledger_explains_balance(account_id)


# --- the property ---------------------------------------------------------------------------

# Small amounts against a balance of up to 60, so that changes mostly succeed
# and some are refused.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("spend"), st.integers(1, 10)),
        st.tuples(st.just("grant"), st.integers(1, 20)),
        st.tuples(st.just("adjust"), st.integers(-10, 10).filter(bool)),
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
            elif kind == "retry" and done:
                function, args, result = done[value % len(done)]
                assert function(account_id, *args) == result  # the original outcome, nothing changed
        except ConduitError as error:
            assert error.code == "NO_CREDITS"
            assert expected + {"spend": -value, "adjust": value}.get(kind, 0) < 0
        assert balance(account_id) == expected >= 0
    assert_ledger_explains_balance(account_id)
