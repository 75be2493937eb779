"""Agent webhooks (API.md §8): a provider POSTs to the agent's webhook URL to start a run.

The caller proves itself with `X-Webhook-Secret`, compared in constant time
with the stored hash. A missing agent, an agent without a webhook trigger and
a wrong secret are the same 401, so the URL reveals nothing to a guesser.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from pydantic import Field

from conduit.platform import safe_json
from conduit.agents.definitions import hash_secret
from conduit.platform.errors import ConduitError
from conduit.accounts.features import require_feature
from conduit.identity.rate_limit import count_account_request
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.agents import AgentsRepository
from conduit.agents.runs import start_run
from conduit.platform.tiers import get_tiers
from conduit.platform.views import View

_NO_SECRET = hash_secret("")  # compared against when there is nothing to compare, so timing says nothing


class WebhookRun(View):
    runId: str = Field(description="The run started, with the body as its input (GET /runs/{runId})")


def trigger(agent_id: str, secret: str | None, body: str | None) -> dict[str, Any]:
    agent = AgentsRepository().find(agent_id) if 0 < len(agent_id) <= 64 else None
    expected = agent.get("webhookSecretHash") if agent and agent["triggerType"] == "webhook" else None
    matches = hmac.compare_digest(hash_secret(secret or ""), expected or _NO_SECRET)
    if agent is None or expected is None or not secret or not matches:
        raise ConduitError("WEBHOOK_SECRET_INVALID")
    account = AccountsRepository().get(agent["accountId"])
    if account is None:
        raise ConduitError("WEBHOOK_SECRET_INVALID")
    tier = get_tiers().tier(account.tier)
    count_account_request(account)
    require_feature(tier, "webhooks")  # the account may have lost the feature since
    payload = _payload(body)
    if agent.get("webhookSchemaJson"):
        _check_payload(json.loads(agent["webhookSchemaJson"]), payload)
    run = start_run(account, agent, payload, "webhook")
    return WebhookRun(runId=run["id"]).body()


def _payload(body: str | None) -> Any:
    if body is None or not body.strip():
        return None
    try:
        return safe_json.loads(body)
    except ValueError:
        raise ConduitError("WEBHOOK_PAYLOAD_INVALID", "The body is not JSON") from None


def _check_payload(schema: dict[str, Any], payload: Any) -> None:
    from conduit.platform.json_schemas import instance_problems  # only webhooks with a schema pay for jsonschema

    problems = instance_problems(schema, payload)
    if problems:
        details = [{"field": f"body.{path}" if path else "body", "message": message} for path, message in problems]
        raise ConduitError("WEBHOOK_PAYLOAD_INVALID", details=details)
