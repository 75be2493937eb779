"""Agent webhooks on a Lambda Function URL: POST <webhook.url> starts a run (API.md §8)."""

from __future__ import annotations

from conduit.agents import webhooks
from conduit.http.api import handler_for, make_resolver
from conduit.identity.gate import public
from conduit.http.routes import answers
from conduit.platform.settings import RUNS_NEED
from conduit.agents.webhooks import WebhookRun

url_app = make_resolver("function_url", needs=RUNS_NEED)  # mounted at /webhooks


@url_app.post(
    "/<agentId>",
    tags=["Agents"],
    summary="Start a run of a webhook agent (X-Webhook-Secret)",
    description="The body (any JSON, or none) is the run's input. Served at the agent's `webhook.url` "
    "(a Function URL on AWS; `/webhooks/<agentId>` under `make dev`). Webhook calls count against the account's "
    "per-minute request limit.",
    **answers(
        (
            "WEBHOOK_SECRET_INVALID",
            "A missing or wrong secret, an unknown agent or one that is not a webhook agent (one answer)",
        ),
        (
            "WEBHOOK_PAYLOAD_INVALID",
            "The body is not JSON, or does not match the agent's webhookSchema (`details` say where)",
        ),
        ("TIER_REQUIRED", "The account's tier no longer has webhooks"),
        ("RATE_LIMITED", "The account's per-minute request limit (Retry-After)"),
        ("AGENT_INACTIVE", "The agent's isActive is false"),
        ("AGENT_ALREADY_RUNNING", "The agent has a run in progress"),
        ("NO_CREDITS", "The balance cannot pay the first model turn"),
        status=202,
        description="The run started",
    ),
)
@public()
def trigger(agentId: str) -> WebhookRun:  # noqa: N803
    event = url_app.current_event
    return webhooks.trigger(agentId, event.headers.get("x-webhook-secret"), event.decoded_body)


lambda_handler = handler_for(url_app)
