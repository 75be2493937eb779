"""Agents (API.md §8): definitions, webhook secrets and EventBridge Scheduler schedules.

An agent belongs to an account and is counted against its tier (`maxAgents`).
Webhook and scheduled triggers are tier features. A webhook agent has a
secret shown once (on create, on rotate, or when it becomes a webhook agent);
only its SHA-256 is stored: the secret is 256 random bits, so a fast hash
is enough and a slow one would only slow every webhook call. A scheduled
agent owns one schedule, named by the agent id, that invokes the run steps
function, which starts a run as a manual start would.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from conduit.agents import runs
from conduit.platform.aws import scheduler_client
from conduit.platform.errors import validation_error
from conduit.platform.ids import iso, new_id, utc_now
from conduit.accounts.features import require_feature
from conduit.models import compact, resolve_model
from conduit.repositories.accounts import Account
from conduit.repositories.agents import AgentsRepository
from conduit.repositories.base import Page
from conduit.repositories.sites import SitesRepository
from conduit.platform.settings import get_settings
from conduit.platform.tiers import get_tiers
from conduit.vault.toolbox import DEFAULT_MAX_ROUNDS
from conduit.platform.views import Omitted, View

TRIGGER_FEATURES = {"webhook": "webhooks", "scheduled": "schedules"}
_RATE = re.compile(r"^rate\((\d{1,6}) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((\S+( \S+){5})\)$")  # six fields: minutes hours day-of-month month day-of-week year
_AT = re.compile(r"^at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)$")


# --- views --------------------------------------------------------------------
def webhook_url(agent_id: str) -> str:
    return f"{get_settings().webhook_base_url}{agent_id}"


Trigger = Literal["manual", "webhook", "scheduled"]


class WebhookEndpoint(View):
    url: str = Field(description="POST here with the X-Webhook-Secret header to start a run")
    secret: Annotated[str | None, Omitted] = Field(
        None, description="`cwh_…`: only in the answer that made it (create, a change to the webhook trigger)"
    )


class WebhookSecret(View):
    """A webhook agent's new secret; the previous one stops working at once."""

    url: str
    secret: str = Field(description="`cwh_…`: shown only here")


class AgentView(View):
    """An agent (API.md §8)."""

    id: str
    accountId: str
    name: str
    description: str | None
    systemPrompt: str = Field(description="The model's system prompt")
    model: str = Field(description="`provider:model`")
    siteIds: list[str] | None = Field(
        description="The sites whose tools the agent may use; null: every site of the account"
    )
    maxRounds: int = Field(description="Model turns per run, at most")
    triggerType: Trigger
    schedule: str | None = Field(description="Scheduled agents: an EventBridge Scheduler expression (rate, cron or at)")
    timezone: str | None = Field(description="Scheduled agents: the IANA time zone of the schedule (UTC when null)")
    webhookSchema: dict[str, Any] | None = Field(
        description="Webhook agents: the JSON Schema a webhook body must match"
    )
    isActive: bool = Field(description="An inactive agent cannot run (409 AGENT_INACTIVE) and its schedule is off")
    activeRunId: str | None = Field(description="The run in progress, if any (one at a time)")
    createdAt: str
    updatedAt: str
    webhook: Annotated[WebhookEndpoint | None, Omitted] = Field(None, description="Webhook agents only")

    @classmethod
    def of(cls, agent: dict[str, Any], *, secret: str | None = None) -> Self:
        webhook = None
        if agent["triggerType"] == "webhook":
            webhook = WebhookEndpoint(
                url=webhook_url(agent["agentId"]), secret=secret
            )  # the secret only when it is made
        return cls(
            id=agent["agentId"],
            accountId=agent["accountId"],
            name=agent["name"],
            description=agent.get("description"),
            systemPrompt=agent["systemPrompt"],
            model=agent["model"],
            siteIds=agent.get("siteIds"),
            maxRounds=int(agent["maxRounds"]),
            triggerType=agent["triggerType"],
            schedule=agent.get("schedule"),
            timezone=agent.get("timezone"),
            webhookSchema=json.loads(agent["webhookSchemaJson"]) if agent.get("webhookSchemaJson") else None,
            isActive=agent["isActive"],
            activeRunId=agent.get("activeRunId"),
            createdAt=agent["createdAt"],
            updatedAt=agent["updatedAt"],
            webhook=webhook,
        )


# --- rules ----------------------------------------------------------------------
def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_webhook_secret() -> tuple[str, str]:
    # cwh_ ("Conduit webhook"), not Stripe's whsec_; secrets are stored hashed, so older whsec_ ones still verify.
    secret = f"cwh_{secrets.token_urlsafe(32)}"
    return secret, hash_secret(secret)


def check_schedule(expression: str, timezone: str | None) -> None:
    """EventBridge Scheduler's three forms, checked here so a bad one is a clear 400."""
    rate = _RATE.match(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1 or (value == 1) != (not unit.endswith("s")):
            raise validation_error("schedule", "rate(1 minute), rate(5 minutes): a positive value with a matching unit")
    elif not (_CRON.match(expression) or _AT.match(expression)):
        raise validation_error("schedule", "must be rate(value unit), cron(six fields) or at(yyyy-mm-ddThh:mm:ss)")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise validation_error("timezone", "must be an IANA time zone such as Europe/Paris") from None


def check_webhook_schema(schema: Any) -> None:
    from conduit.platform.json_schemas import schema_problems  # only agents with a webhook schema pay for jsonschema

    problems = schema_problems(schema)
    if problems:
        path, message = problems[0]
        raise validation_error(f"webhookSchema{'.' + path if path else ''}", f"is not a valid JSON Schema: {message}")


def check_sites(account: Account, site_ids: list[str] | None) -> None:
    if not site_ids:
        return
    sites = {site["siteId"] for site in SitesRepository().all_sites(account.account_id)}
    for index, site_id in enumerate(site_ids):
        if site_id not in sites:
            raise validation_error(f"siteIds.{index}", "no site of this account has this id")


def _check_trigger(account: Account, agent: dict[str, Any]) -> None:
    """A trigger's tier feature and its settings; the agent as it will be stored."""
    trigger = agent["triggerType"]
    if trigger in TRIGGER_FEATURES:
        require_feature(get_tiers().tier(account.tier), TRIGGER_FEATURES[trigger])
    if trigger == "scheduled":
        if not agent.get("schedule"):
            raise validation_error("schedule", "is required for a scheduled agent")
        check_schedule(agent["schedule"], agent.get("timezone"))
    elif agent.get("schedule") or agent.get("timezone"):
        raise validation_error("schedule", "is only for scheduled agents")
    if agent.get("webhookSchemaJson") and trigger != "webhook":
        raise validation_error("webhookSchema", "is only for webhook agents")


# --- schedules --------------------------------------------------------------------
def _schedule_request(agent: dict[str, Any]) -> dict[str, Any]:
    settings = get_settings()
    request = {
        "Name": agent["agentId"],
        "GroupName": settings.schedule_group,
        "ScheduleExpression": agent["schedule"],
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED" if agent["isActive"] else "DISABLED",
        "Target": {
            "Arn": settings.schedule_target_arn,
            "RoleArn": settings.scheduler_role_arn,
            "Input": compact({"step": "scheduled_start", "agentId": agent["agentId"]}),
        },
    }
    if agent.get("timezone"):
        request["ScheduleExpressionTimezone"] = agent["timezone"]
    return request


def _put_schedule(agent: dict[str, Any], exists: bool) -> None:
    client = scheduler_client()
    try:
        (client.update_schedule if exists else client.create_schedule)(**_schedule_request(agent))
    except client.exceptions.ValidationException as error:  # the service knows its expressions best
        raise validation_error("schedule", error.response["Error"].get("Message", "is not accepted")) from None


def _delete_schedule(agent_id: str) -> None:
    client = scheduler_client()
    try:
        client.delete_schedule(Name=agent_id, GroupName=get_settings().schedule_group)
    except client.exceptions.ResourceNotFoundException:
        pass  # already gone: deleting is idempotent


# --- operations -------------------------------------------------------------------
def create_agent(account: Account, fields: dict[str, Any]) -> dict[str, Any]:
    now = iso(utc_now())
    agent: dict[str, Any] = {
        "agentId": new_id("agt"),
        "accountId": account.account_id,
        "name": fields["name"],
        "systemPrompt": fields["systemPrompt"],
        "description": fields.get("description"),
        "model": fields.get("model") or get_settings().default_model,
        "siteIds": fields.get("siteIds"),
        "maxRounds": fields.get("maxRounds") or DEFAULT_MAX_ROUNDS,
        "triggerType": fields.get("triggerType") or "manual",
        "schedule": fields.get("schedule"),
        "timezone": fields.get("timezone"),
        "webhookSchemaJson": compact(fields["webhookSchema"]) if fields.get("webhookSchema") is not None else None,
        "isActive": True if fields.get("isActive") is None else fields["isActive"],
        "createdAt": now,
        "updatedAt": now,
    }
    resolve_model(agent["model"])
    _check_trigger(account, agent)
    if fields.get("webhookSchema") is not None:
        check_webhook_schema(fields["webhookSchema"])
    check_sites(account, agent["siteIds"])
    secret = None
    if agent["triggerType"] == "webhook":
        secret, agent["webhookSecretHash"] = new_webhook_secret()
    repository = AgentsRepository()
    repository.create({k: v for k, v in agent.items() if v is not None}, get_tiers().tier(account.tier).max_agents)
    if agent["triggerType"] == "scheduled":
        try:
            _put_schedule(agent, exists=False)
        except Exception:
            repository.delete(agent)  # no agent without its schedule
            raise
    return AgentView.of(agent, secret=secret).body()


def find_agent(account: Account, agent_id: str) -> dict[str, Any]:
    """The account's agent; AGENT_NOT_FOUND for a missing one or another account's (existence does not leak)."""
    return AgentsRepository().find_owned(account.account_id, agent_id)


def list_agents(account: Account, limit: int, cursor: str | None) -> Page:
    page = AgentsRepository().list_agents(account.account_id, limit, cursor)
    return Page(items=[AgentView.of(agent).body() for agent in page.items], next_cursor=page.next_cursor)


def update_agent(account: Account, agent_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply a PATCH: only the fields given (None clears an optional one)."""
    agent = find_agent(account, agent_id)
    updated = dict(agent)
    for name in ("name", "systemPrompt", "description", "model", "siteIds", "maxRounds", "triggerType", "schedule", "timezone", "isActive"):
        if name in changes:
            updated[name] = changes[name]
    if "webhookSchema" in changes:
        updated["webhookSchemaJson"] = compact(changes["webhookSchema"]) if changes["webhookSchema"] is not None else None
    for required in ("name", "systemPrompt", "model", "maxRounds", "triggerType", "isActive"):
        if updated.get(required) is None:
            raise validation_error(required, "cannot be cleared")
    if "model" in changes:
        resolve_model(updated["model"])
    if "triggerType" in changes and updated["triggerType"] != "scheduled":
        updated["schedule"] = updated["timezone"] = None  # leaving the scheduled trigger drops its schedule
    _check_trigger(account, updated)
    if changes.get("webhookSchema") is not None:
        check_webhook_schema(changes["webhookSchema"])
    if "siteIds" in changes:
        check_sites(account, updated["siteIds"])
    secret = None
    was_webhook, is_webhook = agent["triggerType"] == "webhook", updated["triggerType"] == "webhook"
    if is_webhook and not was_webhook:
        secret, updated["webhookSecretHash"] = new_webhook_secret()
    elif not is_webhook:
        updated["webhookSecretHash"] = None
    updated["updatedAt"] = iso(utc_now())
    editable = (
        "name", "systemPrompt", "description", "model", "siteIds", "maxRounds", "triggerType",
        "schedule", "timezone", "webhookSchemaJson", "isActive", "webhookSecretHash", "updatedAt",
    )  # fmt: skip
    values = {name: updated[name] for name in editable if updated.get(name) is not None}
    remove = tuple(name for name in editable if updated.get(name) is None and name in agent)
    was_scheduled, is_scheduled = agent["triggerType"] == "scheduled", updated["triggerType"] == "scheduled"
    if is_scheduled:
        _put_schedule(updated, exists=was_scheduled)  # first, so a refused schedule changes nothing
    stored = AgentsRepository().update(agent, values, remove)
    if was_scheduled and not is_scheduled:
        _delete_schedule(agent_id)
    return AgentView.of(stored, secret=secret).body()


def rotate_webhook_secret(account: Account, agent_id: str) -> dict[str, str]:
    agent = find_agent(account, agent_id)
    if agent["triggerType"] != "webhook":
        raise validation_error("triggerType", "only a webhook agent has a webhook secret")
    secret, secret_hash = new_webhook_secret()
    AgentsRepository().update(agent, {"webhookSecretHash": secret_hash, "updatedAt": iso(utc_now())})
    return WebhookSecret(url=webhook_url(agent_id), secret=secret).body()


def delete_agent(account: Account, agent_id: str) -> None:
    """Delete an agent: its active run is cancelled first, its schedule removed; its runs stay readable."""
    agent = find_agent(account, agent_id)
    if agent.get("activeRunId"):
        runs.stop_run(agent["activeRunId"])
    if agent["triggerType"] == "scheduled":
        _delete_schedule(agent_id)
    AgentsRepository().delete(agent)
