"""Agent webhooks on a Lambda Function URL: POST <webhook.url> starts a run (API.md §8)."""

from __future__ import annotations

from conduit import webhooks
from conduit.api import handler_for, make_resolver
from conduit.auth import public
from conduit.settings import RUNS_NEED

url_app = make_resolver("function_url", needs=RUNS_NEED)  # mounted at /webhooks


@url_app.post("/<agentId>", tags=["Agents"], summary="Start a run of a webhook agent (X-Webhook-Secret)", status_code=202)
@public()
def trigger(agentId: str) -> dict:  # noqa: N803
    event = url_app.current_event
    return webhooks.trigger(agentId, event.headers.get("x-webhook-secret"), event.decoded_body)


lambda_handler = handler_for(url_app)
