"""Rate limits (API.md §4): fixed one-minute windows on DynamoDB counters, one conditional write
per check (conduit.repositories.rate_windows).

Every request of an account is counted by `count_account_request`: the gate counts the caller's
account, a workspace route the workspace's (its own tier), an agent webhook its agent's account.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from conduit.platform.errors import ConduitError
from conduit.repositories.accounts import Account
from conduit.repositories.rate_windows import RateWindowsRepository
from conduit.platform.tiers import get_tiers

WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class RateWindow:
    limit: int
    remaining: int
    reset_epoch: int  # when the window ends

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_epoch),
        }


def count_account_request(account: Account) -> RateWindow:
    """One request of `account`, at its tier's requests per minute; RATE_LIMITED (429) when full."""
    return _hit("account", account.account_id, get_tiers().tier(account.tier).requests_per_minute)


def count_anonymous_request(source_ip: str) -> RateWindow:
    """One unauthenticated request from `source_ip`; RATE_LIMITED (429) when full."""
    return _hit("ip", source_ip, get_tiers().unauthenticated_requests_per_minute)


def count_outgoing_call(account_id: str, domain: str) -> RateWindow:
    """One tool call of an account to a site's domain; OUTGOING_RATE_LIMITED (429) when full."""
    limit = get_tiers().outgoing_calls_per_minute_per_domain
    return _hit("outgoing", f"{account_id}#{domain}", limit, code="OUTGOING_RATE_LIMITED")


def _hit(scope: str, subject: str, limit: int, *, code: str = "RATE_LIMITED") -> RateWindow:
    now = time.time()
    window_start = int(now // WINDOW_SECONDS) * WINDOW_SECONDS
    reset = window_start + WINDOW_SECONDS
    count = RateWindowsRepository().count(scope, subject, window_start, limit, expires_at=reset + WINDOW_SECONDS)
    if count is None:
        window = RateWindow(limit=limit, remaining=0, reset_epoch=reset)
        retry_after = max(1, math.ceil(reset - now))
        raise ConduitError(code, headers={"Retry-After": str(retry_after), **window.headers()})
    return RateWindow(limit=limit, remaining=max(0, limit - count), reset_epoch=reset)
