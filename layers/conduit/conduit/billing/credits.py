"""The credit ledger: two exact integer balances per account, never negative, and holds.

API.md §4, §15. Items (partition `ACCOUNT#<accountId>`, see TABLE.md):
- the account item: `monthlyCredits` (granted at each renewal, spent first, lapsing at the
  next renewal), `purchasedCredits` (purchases, signup credits, admin grants; never lapse),
  `credits` (their sum, what GET /auth/me and auto top-up read), `heldCredits` (the sum of
  the open holds) and `balanceChangedAt`. An item written before the two balances has only
  `credits`: it reads as purchased credits, and its first change writes the new attributes;
- `LEDGER#<createdAt>#<entryId>`: one per change, `{id, delta, balance, reason, createdAt, key}`
  (`balance` is the sum after it; `monthly`/`purchased` the two balances after it);
- `IDEMPOTENCY#<key>`: the outcome of the change made under `key`, with a hash of the request;
- `HOLD#<key>`: an open hold `{key, amount, reason, leaseUntil}`.

How it stays exact:
- Each change is ONE transaction: the balances, its ledger entry and its idempotency
  marker (`attribute_not_exists`). Either all land or none.
- Every write (holds and releases too) is compare-and-set on `balanceChangedAt`, which it
  moves forward: a change reads the account, computes, and writes on the condition that
  nothing changed since; if something did, it reads again. So the checks below are exact
  under any concurrency, and the ledger sorts in commit order.
- A spend takes monthly credits first, then purchased ones, and needs the balance minus the
  holds to cover it. A hold reserves credits (`heldCredits`) without a ledger entry; its
  settlement charges the actual cost (one ledger entry) and frees the hold; a release frees it.
- A retry with a used key finds the marker and returns the original outcome, writing
  nothing; the same key with a different request → IDEMPOTENCY_KEY_REUSED. Keys are per account.

A hold carries a lease (`leaseUntil`, epoch seconds): one whose process died without settling
or releasing it (a Lambda killed at its timeout) is released by the first hold or spend that
would otherwise be refused for want of credits. Never by TTL: the account's `heldCredits`
must drop with it, in one transaction.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from pydantic import Field

from conduit.billing import auto_top_up
from conduit.platform.errors import ConduitError, validation_error
from conduit.platform.ids import iso, new_id, parse_iso
from conduit.models import Message, ToolSpec, Usage
from conduit.platform.observability import logger
from conduit.billing.pricing import hold_amount, price_of, turn_cost
from conduit.repositories.accounts import ledger_entry_item
from conduit.repositories.base import ConditionsFailed, Page, backoff
from conduit.repositories.credits import CreditsRepository
from conduit.repositories.billing import top_up_threshold
from conduit.platform.tiers import ModelPrice, get_tiers
from conduit.platform.views import View

# Compare-and-set rounds before giving up. Each round some rival committed,
# so this bounds waiting on a hot account rather than correctness.
MAX_ATTEMPTS = 50
MAX_KEY_LENGTH = 255  # keys are part of a sort key (1 KiB at most)
LAPSE_REASON = "monthly credits lapsed"


# --- the operations ------------------------------------------------------------


def spend(account_id: str, amount: int, reason: str, key: str, *, account_item: dict[str, Any] | None = None) -> int:
    """Charge `amount`, monthly credits first; the new balance (the sum). A balance that cannot
    cover it beside the open holds → NO_CREDITS. A spend that leaves the balance under the auto
    top-up threshold starts a top-up. `account_item`: the account as the gate read it moments
    ago, written from as in hold_model_turn (one request; a stale copy costs a failed write)."""
    _require_positive("amount", amount)
    known = _known_from(account_item)
    return int(_change(account_id, -amount, reason, key, usage=True, known=known)["balance"])


def grant(account_id: str, amount: int, reason: str, key: str) -> int:
    """Add `amount` of purchased (non-lapsing) credits: a purchase, a top-up; the new balance."""
    _require_positive("amount", amount)
    return int(_change(account_id, amount, reason, key)["balance"])


def adjust(account_id: str, delta: int, reason: str, key: str) -> int:
    """An admin's correction either way (a grant is purchased credits; a removal takes monthly
    credits first); the new balance. Below zero → NO_CREDITS."""
    if not _is_int(delta) or delta == 0:
        raise validation_error("delta", "must be a non-zero integer")
    return int(_change(account_id, delta, reason, key)["balance"])


def renew(account_id: str, monthly: int, reason: str, key: str) -> int:
    """A renewal: the monthly credits left lapse (a ledger entry of their own) and `monthly`
    new ones are granted, in one transaction under `key`; the new balance."""
    _require_text("reason", reason, 500)
    _require_text("key", key, MAX_KEY_LENGTH)
    if not _is_int(monthly) or monthly < 0:
        raise validation_error("monthly", "must be a non-negative integer")
    table = CreditsRepository()
    request = _fingerprint("renew", monthly, reason)
    for _ in _attempts(account_id):
        seen, marker, _hold = _read(table, account_id, key)
        if marker is not None:
            return int(_replayed(marker, request)["balance"])
        at = _next_timestamp(seen)
        after = seen.with_balances(monthly=monthly, purchased=seen.purchased)
        entries = []
        if seen.monthly:
            entries.append(_entry(account_id, -seen.monthly, seen.with_balances(0, seen.purchased), LAPSE_REASON, key, at))
            at = iso(parse_iso(at) + timedelta(microseconds=1))
        if monthly:
            entries.append(_entry(account_id, monthly, after, reason, key, at))
        marker = _marker(account_id, key, request, after, at, entries[-1]["id"] if entries else None, delta=monthly - seen.monthly)
        items = [_set_balances(table, account_id, seen, after, at), *(table.put_new(e) for e in entries), table.put_new(marker)]
        try:
            table.write(items)
        except ConditionsFailed:
            continue
        return after.credits
    raise AssertionError("unreachable")


def balances(account_id: str) -> dict[str, int]:
    """The account's balances as GET /billing shows them (strongly consistent)."""
    seen, _, _ = _read(CreditsRepository(), account_id, None)
    return {"credits": seen.credits, "monthlyCredits": seen.monthly, "purchasedCredits": seen.purchased}


class LedgerEntry(View):
    """A change of the balance."""

    id: str
    delta: int = Field(description="A priced model turn shows its actual cost, one entry per turn; a lapse is its own entry")
    balance: int = Field(description="The balance (the sum of both) after this entry")
    reason: str
    createdAt: str

    @classmethod
    def of(cls, item: dict[str, Any]) -> Self:
        return cls(id=item["id"], delta=item["delta"], balance=item["balance"], reason=item["reason"], createdAt=item["createdAt"])


def ledger_page(account_id: str, limit: int = 20, cursor: str | None = None) -> Page:
    """The ledger newest first, as GET /billing/ledger lists it."""
    page = CreditsRepository().ledger_page(account_id, limit, cursor)
    return Page(items=[LedgerEntry.of(item).body() for item in page.items], next_cursor=page.next_cursor)


# --- model turns: hold, settle, release -------------------------------------------


class ModelTurnHold:
    """The credits of one model turn (API.md §15), as a context manager:

        with credits.hold_model_turn(account_id, model, messages, tools, reason, key, lease_until) as hold:
            turn = provider.complete(...)
            hold.settle(turn.usage)

    A priced model: entering holds the most the turn can cost (NO_CREDITS before the provider
    is called when the balance cannot cover it); `settle` charges the actual cost, one ledger
    entry, and frees the hold; leaving any other way (provider failure, timeout, client gone)
    releases it all. An unpriced model: entering spends `costs.modelTurn`, which stands.
    The same key again (a Step Functions retry of the step) takes over its open hold, or finds
    the turn already settled and charges nothing more. `cost` is what the turn was charged."""

    def __init__(
        self, account_id: str, key: str, reason: str, *, price: ModelPrice | None, amount: int, cost: int, state: str
    ) -> None:
        self.account_id, self.key, self.reason, self.price = account_id, key, reason, price
        self.amount = amount  # credits held (priced) or spent up front (unpriced)
        self.cost = cost
        self.state = state  # held | settled | prepaid | released
        # The balances as this hold's own write left them, when it wrote them: the settlement's
        # first round starts from them (no read); a rival's change since fails its conditions.
        self.after_hold: _Balance | None = None

    def settle(self, usage: Usage) -> int:
        """Charge the turn's actual cost and free the hold; the cost charged."""
        if self.state == "held":
            known = (self.after_hold, None, {"amount": self.amount}) if self.after_hold is not None else None
            self.cost = _settle(self.account_id, self.key, self.reason, turn_cost(self.price, usage), known=known)
            self.state = "settled"
        return self.cost

    def release(self) -> None:
        """Free the hold without a charge (the turn ended without an answer)."""
        if self.state == "held":
            _release(self.account_id, self.key)
            self.state = "released"

    def __enter__(self) -> ModelTurnHold:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self.state == "held":
            if kind is None:
                logger.warning("A held model turn ended without settling; released", extra={"key": self.key})
            self.release()


def hold_model_turn(
    account_id: str,
    model: str,
    messages: list[Message],
    tools: list[ToolSpec],
    reason: str,
    key: str,
    lease_until: float,
    *,
    system: str | None = None,
    account_item: dict[str, Any] | None = None,
) -> ModelTurnHold:
    """Hold (or, unpriced, spend) the credits of one turn of `model` under `key`; see ModelTurnHold.
    `lease_until` (epoch seconds): when a hold nobody settled may be taken back. `account_item`: the
    account as the caller read it moments ago (the gate's read): the first round writes from it
    without reading (one request instead of two); if it is stale, the write's conditions fail and
    the usual rounds read afresh. It is never trusted to refuse: a refusal is decided on a read."""
    price = price_of(model)
    known = _known_from(account_item)
    if price is None:
        cost = get_tiers().costs.model_turn
        _require_positive("amount", cost)
        # Fingerprinted as a turn, like a settlement: a step retried after the tiers file priced
        # (or unpriced) its model finds the turn paid rather than a key reused.
        marker = _change(account_id, -cost, reason, key, usage=True, request=_fingerprint("turn", reason), known=known)
        cost = _cost_of(marker, cost)  # a retry: what the turn was charged then
        return ModelTurnHold(account_id, key, reason, price=None, amount=cost, cost=cost, state="prepaid")
    amount = hold_amount(model, price, messages, tools, system)
    held, settled_cost, after_hold = _hold(account_id, amount, reason, key, lease_until, known=known)
    if settled_cost is not None:  # a retry of a turn already settled: it was charged once
        return ModelTurnHold(account_id, key, reason, price=price, amount=0, cost=settled_cost, state="settled")
    hold = ModelTurnHold(account_id, key, reason, price=price, amount=held, cost=0, state="held")
    hold.after_hold = after_hold
    return hold


def open_holds(account_id: str) -> list[dict[str, Any]]:
    """The account's open holds (plain items)."""
    return CreditsRepository().open_holds(account_id)


def _hold(
    account_id: str, amount: int, reason: str, key: str, lease_until: float, *, known: _Snapshot | None = None
) -> tuple[int, int | None, _Balance | None]:
    """(credits held, None, the balances after this write, when it wrote), or (0, cost, None) when
    the turn under `key` was settled already."""
    _require_text("reason", reason, 500)
    _require_text("key", key, MAX_KEY_LENGTH)
    table = CreditsRepository()
    reclaimed = False
    for attempt in _rounds(account_id, known):
        seen, marker, hold = known if attempt == _KNOWN and known is not None else _read(table, account_id, key, with_hold=True)
        if marker is not None:
            return 0, _cost_of(marker, get_tiers().costs.model_turn), None
        if hold is not None:  # a retry of the same step: its hold stands, take it over
            return int(hold["amount"]), None, None
        if amount > seen.available:
            if attempt == _KNOWN:
                continue  # refused only on a read

            if not reclaimed and _reclaim_expired_holds(table, account_id):
                reclaimed = True
                continue
            raise ConduitError("NO_CREDITS")
        at = _next_timestamp(seen)
        after = seen.with_held(seen.held + amount)
        hold_item = table.hold_item(account_id, key, amount=amount, reason=reason, createdAt=at, leaseUntil=int(lease_until) + 1)
        items = [
            _set_balances(table, account_id, seen, after, at),
            table.put_new(hold_item),
            table.marker_absent(account_id, key),
        ]
        try:
            table.write(items)
        except ConditionsFailed:
            continue
        return amount, None, replace(after, changed_at=at)
    raise AssertionError("unreachable")


def _settle(account_id: str, key: str, reason: str, cost: int, *, known: _Snapshot | None = None) -> int:
    """Charge a held turn's actual `cost` (one ledger entry) and free its hold; the cost charged.
    A cost above what the balance still covers (its hold and the credits nobody holds: an input
    estimate that undershot, or a hold taken back after its lease) is charged as far as it goes."""
    table = CreditsRepository()
    request = _fingerprint("turn", reason)
    for attempt in _rounds(account_id, known):
        seen, marker, hold = known if attempt == _KNOWN and known is not None else _read(table, account_id, key, with_hold=True)
        if marker is not None:
            return _cost_of(_replayed(marker, request), cost)
        held_here = int(hold["amount"]) if hold else 0
        covered = max(0, seen.credits - (seen.held - held_here))
        charge = min(cost, covered)
        if charge < cost:
            logger.warning("A model turn cost more than the balance covered", extra={"key": key, "cost": cost, "charged": charge})
        at = _next_timestamp(seen)
        after = seen.spent(charge).with_held(seen.held - held_here)
        entry = _entry(account_id, -charge, after, reason, key, at)
        items = [
            _set_balances(table, account_id, seen, after, at),
            table.put_new(entry),
            table.put_new(_marker(account_id, key, request, after, at, entry["id"], delta=-charge)),
        ]
        if hold is not None:
            items.append(table.delete_hold(account_id, key))
        try:
            table.write(items)
        except ConditionsFailed:
            continue
        if seen.top_up_below is not None and after.credits < seen.top_up_below:
            auto_top_up.start(account_id)
        return charge
    raise AssertionError("unreachable")


def _release(account_id: str, key: str) -> bool:
    """Free the hold under `key`, charging nothing; False when there was none (released already)."""
    table = CreditsRepository()
    for _ in _attempts(account_id):
        seen, _, hold = _read(table, account_id, None, with_hold=True, hold_key=key)
        if hold is None:
            return False
        at = _next_timestamp(seen)
        after = seen.with_held(max(0, seen.held - int(hold["amount"])))
        items = [_set_balances(table, account_id, seen, after, at), table.delete_hold(account_id, key)]
        try:
            table.write(items)
        except ConditionsFailed:
            continue
        return True
    raise AssertionError("unreachable")


def _reclaim_expired_holds(table: CreditsRepository, account_id: str) -> bool:
    """Release the holds whose lease has passed (their process died); whether any was."""
    now = time.time()
    expired = [hold["key"] for hold in open_holds(account_id) if int(hold["leaseUntil"]) < now]
    for key in expired:
        logger.warning("Released a hold past its lease", extra={"accountId": account_id, "key": key})
        _release(account_id, key)
    return bool(expired)


# --- one change of the balances ------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Balance:
    """The balances as read, which the write is conditioned on (`changed_at`)."""

    monthly: int
    purchased: int
    held: int
    changed_at: str
    top_up_below: int | None = None  # auto top-up threshold, when auto top-up is on

    @property
    def credits(self) -> int:
        return self.monthly + self.purchased

    @property
    def available(self) -> int:
        return self.credits - self.held

    def with_balances(self, monthly: int, purchased: int) -> _Balance:
        return _Balance(monthly, purchased, self.held, self.changed_at, self.top_up_below)

    def with_held(self, held: int) -> _Balance:
        return _Balance(self.monthly, self.purchased, held, self.changed_at, self.top_up_below)

    def spent(self, amount: int) -> _Balance:
        """`amount` taken, monthly credits first."""
        from_monthly = min(self.monthly, amount)
        return self.with_balances(self.monthly - from_monthly, self.purchased - (amount - from_monthly))

    def changed(self, delta: int) -> _Balance:
        return self.spent(-delta) if delta < 0 else self.with_balances(self.monthly, self.purchased + delta)


def _change(
    account_id: str,
    delta: int,
    reason: str,
    key: str,
    *,
    usage: bool = False,
    request: str | None = None,
    known: _Snapshot | None = None,
) -> dict[str, Any]:
    """Apply `delta` under `key` once; the marker (outcome) of the change. `usage` (a spend)
    must leave the holds covered, and starts an auto top-up when it leaves the balance under
    the account's threshold."""
    _require_text("reason", reason, 500)
    _require_text("key", key, MAX_KEY_LENGTH)
    table = CreditsRepository()
    request = request or _fingerprint("change", delta, reason)
    reclaimed = False
    for attempt in _rounds(account_id, known):
        seen, marker, _hold = known if attempt == _KNOWN and known is not None else _read(table, account_id, key)
        if marker is not None:
            return _replayed(marker, request)  # a retry: the original outcome, nothing written
        after = seen.changed(delta)
        if after.credits < 0 or (usage and after.available < 0):
            if attempt == _KNOWN:
                continue  # refused only on a read
            if usage and not reclaimed and _reclaim_expired_holds(table, account_id):
                reclaimed = True
                continue
            raise ConduitError("NO_CREDITS")
        at = _next_timestamp(seen)
        entry = _entry(account_id, delta, after, reason, key, at)
        marker = _marker(account_id, key, request, after, at, entry["id"], delta=delta)
        items = [_set_balances(table, account_id, seen, after, at), table.put_new(entry), table.put_new(marker)]
        try:
            table.write(items)
        except ConditionsFailed:
            # The balance changed since we read it, or a concurrent call with the
            # same key committed first; the next round's read sorts out which.
            continue
        if usage and seen.top_up_below is not None and after.credits < seen.top_up_below:
            auto_top_up.start(account_id)  # after the commit: the spend stands whatever happens there
        return marker
    raise AssertionError("unreachable")  # _attempts raises when exhausted


def _read(
    table: CreditsRepository, account_id: str, key: str | None, *, with_hold: bool = False, hold_key: str | None = None
) -> tuple[_Balance, dict[str, Any] | None, dict[str, Any] | None]:
    """The balances, the marker of `key` and the hold of `key` (or `hold_key`): one consistent snapshot."""
    account, marker, hold = table.snapshot(account_id, key, (hold_key or key) if with_hold else None)
    if account is None:
        raise ConduitError("NOT_FOUND", "No account found with the provided ID")
    return balance_of(account), marker, hold


def _known_from(account_item: dict[str, Any] | None) -> _Snapshot | None:
    """A snapshot to write from without reading (no marker, no hold assumed): the write's conditions
    fail if any of it is stale, and the next round reads."""
    return (balance_of(account_item), None, None) if account_item is not None else None


def balance_of(account: dict[str, Any]) -> _Balance:
    """The balances of a plain account item. An item from before the two balances has only
    `credits`: all of it reads as purchased credits (they never lapse)."""
    monthly = int(account.get("monthlyCredits", 0))
    purchased = int(account["purchasedCredits"]) if "purchasedCredits" in account else int(account["credits"]) - monthly
    return _Balance(
        monthly=monthly,
        purchased=purchased,
        held=int(account.get("heldCredits", 0)),
        changed_at=account["balanceChangedAt"],
        top_up_below=top_up_threshold(account),
    )


def _set_balances(table: CreditsRepository, account_id: str, seen: _Balance, after: _Balance, at: str) -> dict[str, Any]:
    return table.set_balances(
        account_id,
        seen_changed_at=seen.changed_at,
        at=at,
        credits=after.credits,
        monthlyCredits=after.monthly,
        purchasedCredits=after.purchased,
        heldCredits=after.held,
    )


def _entry(account_id: str, delta: int, after: _Balance, reason: str, key: str, at: str) -> dict[str, Any]:
    entry = ledger_entry_item(
        account_id, entry_id=new_id("led"), delta=delta, balance=after.credits, reason=reason, key=key, created_at=at
    )
    return {**entry, "monthly": after.monthly, "purchased": after.purchased}


def _marker(
    account_id: str, key: str, request: str, after: _Balance, at: str, entry_id: str | None, *, delta: int
) -> dict[str, Any]:
    marker = CreditsRepository.marker_item(account_id, key, request=request, delta=delta, balance=after.credits, createdAt=at)
    if entry_id is not None:
        marker["entryId"] = entry_id
    return marker


def _cost_of(marker: dict[str, Any], default: int) -> int:
    """What the change under a marker charged; markers from before `delta` was kept were flat
    model turns (`default`)."""
    return -int(marker["delta"]) if "delta" in marker else default


def _fingerprint(*request: object) -> str:
    """What a key was used for: the same key for another request must not replay this one's outcome."""
    return hashlib.sha256("\x1f".join(map(str, request)).encode()).hexdigest()[:32]


def _replayed(marker: dict[str, Any], request: str) -> dict[str, Any]:
    """The stored outcome of a retry; a different request under the key → IDEMPOTENCY_KEY_REUSED.
    Markers from before the hash was kept have none, and replay as before."""
    if marker.get("request", request) != request:
        raise ConduitError("IDEMPOTENCY_KEY_REUSED")
    return marker


def _next_timestamp(seen: _Balance) -> str:
    """Now, but strictly after the previous change, so the ledger sorts in commit order."""
    now = datetime.now(UTC)
    after_previous = parse_iso(seen.changed_at) + timedelta(microseconds=1)
    return iso(max(now, after_previous))


_KNOWN = -1  # the round that writes from a snapshot the caller already holds
_Snapshot = tuple["_Balance", dict[str, Any] | None, dict[str, Any] | None]  # (balances, marker, hold), as _read returns


def _rounds(account_id: str, known: _Snapshot | None) -> Iterator[int]:
    """With a known snapshot, first a round that writes from it without reading (its conditions are
    the same, so a stale snapshot only costs that failed write); then the usual rounds, all of them."""
    if known is not None:
        yield _KNOWN
    yield from _attempts(account_id)


def _attempts(account_id: str) -> Iterator[int]:
    """Rounds of compare-and-set, with jittered backoff so rivals spread out."""
    yield from backoff(MAX_ATTEMPTS, base=0.001, cap=0.1)
    raise RuntimeError(f"the balance of account {account_id} kept changing; gave up after {MAX_ATTEMPTS} attempts")


# --- input checks (before anything is written) ------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python, not to us


def _require_positive(field: str, value: object) -> None:
    if not _is_int(value) or value <= 0:  # type: ignore[operator]
        raise validation_error(field, "must be a positive integer")


def _require_text(field: str, value: object, max_length: int) -> None:
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise validation_error(field, f"must be a non-empty string of at most {max_length} characters")
