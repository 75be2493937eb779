"""Starting an auto top-up after a spend (API.md §5). No Stripe here: this runs in every
function that spends credits (chat, agent runs), whose cold start must stay free of it.

When a spend leaves the balance under the account's threshold, `start` claims the
"top-up in flight" marker with a conditional write on the account item (so two spends
never start two top-ups) and invokes the billing function asynchronously
(`InvocationType="Event"`), which charges the card (`billing.run_top_up`). The spending
request pays for one conditional write and one Invoke call, never for the charge.

The claim is a lease: if the invocation never runs (it failed, or every Lambda retry
did), a later spend may claim again once it has expired. The billing function's async
retries stop before the lease ends (template: MaximumEventAgeInSeconds), so a retried
invocation never overlaps a newer claim; it checks that its claim is still the current
one before charging anyway.
"""

from __future__ import annotations

import json
import time

from conduit.platform.aws import lambda_client
from conduit.platform.ids import new_id
from conduit.platform.observability import logger
from conduit.repositories.billing import BillingRepository
from conduit.platform.settings import get_settings

TOP_UP_SOURCE = "conduit.auto-top-up"  # marks the billing function's asynchronous top-up events
CLAIM_SECONDS = 15 * 60


def top_up_event(account_id: str, claim: str) -> dict[str, str]:
    return {"source": TOP_UP_SOURCE, "accountId": account_id, "claim": claim}


def start(account_id: str) -> bool:
    """Claim the top-up marker and start the top-up; whether one was started. Never raises:
    the spend that triggered it has committed, and a top-up problem must not fail it."""
    function = get_settings().top_up_function
    if not function:
        logger.warning("auto top-up due, but TOP_UP_FUNCTION is not set", extra={"accountId": account_id})
        return False
    billing = BillingRepository()
    claim = new_id("topup")
    now = int(time.time())
    try:
        if not billing.claim_top_up(account_id, claim, now=now, until=now + CLAIM_SECONDS):
            return False  # one is in flight already, or auto top-up was turned off meanwhile
        lambda_client().invoke(
            FunctionName=function, InvocationType="Event", Payload=json.dumps(top_up_event(account_id, claim)).encode()
        )
        return True
    except Exception:  # noqa: BLE001 - logged; the spend stands either way
        logger.exception("could not start an auto top-up", extra={"accountId": account_id})
        try:
            billing.release_top_up(account_id, claim)  # so a later spend can try again
        except Exception:  # noqa: BLE001
            logger.exception("could not release the auto top-up claim", extra={"accountId": account_id})
        return False
