"""/agents and /runs: agents, their runs on Step Functions, webhook secrets (API.md §8)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from pydantic import Field, StrictBool, StrictInt

from conduit.agents import definitions as agents
from conduit.agents import runs
from conduit.identity.access import account_for
from conduit.agents.definitions import AgentView, Trigger, WebhookSecret
from conduit.http.api import handler_for, make_resolver
from conduit.identity.gate import prefetch
from conduit.repositories.agents import prefetch_agent
from conduit.http.routes import ACCOUNT_ACCESS, Cursor, CurrentCaller, Limit, Page, StrictBody, WorkspaceId, answers, page_body
from conduit.agents.runs import RunView
from conduit.platform.settings import SCHEDULES_NEED

app = make_resolver(needs=SCHEDULES_NEED)


class AgentFields(StrictBody):
    """Fields an agent has; on PATCH, those given are changed (null clears an optional one)."""

    name: str | None = Field(None, min_length=1, max_length=200)
    systemPrompt: str | None = Field(None, min_length=1, max_length=32_000)
    description: str | None = Field(None, max_length=2000)
    model: str | None = Field(None, min_length=3, max_length=200)
    siteIds: list[str] | None = Field(None, max_length=100)
    maxRounds: StrictInt | None = Field(None, ge=1, le=20)
    triggerType: Trigger | None = None
    schedule: str | None = Field(None, min_length=1, max_length=256)
    timezone: str | None = Field(None, min_length=1, max_length=64)
    webhookSchema: dict[str, Any] | None = None
    isActive: StrictBool | None = None


class NewAgent(AgentFields):
    name: str = Field(min_length=1, max_length=200)
    systemPrompt: str = Field(min_length=1, max_length=32_000)
    workspaceId: str | None = Field(None, min_length=1, max_length=64)


class NewRun(StrictBody):
    input: Any = None


class AgentPage(Page[AgentView]):
    pass


class RunPage(Page[RunView]):
    """Runs without their steps."""


AGENT_NOT_FOUND = ("AGENT_NOT_FOUND", "No agent with this id in the account")
BAD_AGENT = (
    "VALIDATION_ERROR",
    "An unknown model provider, a bad schedule or time zone, a webhookSchema that is not a JSON Schema, "
    "an unknown site id, or a setting for another trigger",
)
TRIGGER_TIER = ("TIER_REQUIRED", "A webhook or scheduled trigger on a tier without webhooks or schedules")


@app.post(
    "/agents",
    tags=["Agents"],
    summary="Create an agent",
    description="A webhook agent's answer holds its `webhook.secret`, shown only here (and when rotated).",
    **answers(
        BAD_AGENT,
        ("AGENT_LIMIT_REACHED", "The account has as many agents as its tier allows (maxAgents)"),
        TRIGGER_TIER,
        *ACCOUNT_ACCESS,
        status=201,
        description="The new agent",
    ),
)
def create_agent(request: NewAgent, caller: CurrentCaller) -> AgentView:
    account = account_for(caller, request.workspaceId, "write")
    return agents.create_agent(account, request.model_dump(exclude={"workspaceId"}))


@app.get(
    "/agents",
    tags=["Agents"],
    summary="The account's agents, newest first",
    **answers(*ACCOUNT_ACCESS, description="A page of agents"),
)
def list_agents(
    caller: CurrentCaller, workspace_id: WorkspaceId = None, limit: Limit = 20, cursor: Cursor = None
) -> AgentPage:
    return page_body(agents.list_agents(account_for(caller, workspace_id, "read"), limit, cursor))


@app.get(
    "/agents/<agentId>",
    tags=["Agents"],
    summary="An agent",
    **answers(AGENT_NOT_FOUND, *ACCOUNT_ACCESS, description="The agent"),
)
@prefetch(prefetch_agent)
def get_agent(agentId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> AgentView:  # noqa: N803
    return AgentView.of(agents.find_agent(account_for(caller, workspace_id, "read"), agentId))


@app.patch(
    "/agents/<agentId>",
    tags=["Agents"],
    summary="Change an agent",
    description="Only the fields sent change; null clears an optional one. Becoming a webhook agent makes a secret "
    "(in this answer only); leaving the scheduled trigger deletes the schedule.",
    **answers(AGENT_NOT_FOUND, BAD_AGENT, TRIGGER_TIER, *ACCOUNT_ACCESS, description="The agent"),
)
@prefetch(prefetch_agent)
def update_agent(
    agentId: str,
    request: AgentFields,
    caller: CurrentCaller,
    workspace_id: WorkspaceId = None,  # noqa: N803
) -> AgentView:
    account = account_for(caller, workspace_id, "write")
    return agents.update_agent(account, agentId, request.model_dump(exclude_unset=True))


@app.delete(
    "/agents/<agentId>",
    tags=["Agents"],
    summary="Delete an agent (its active run is cancelled)",
    description="Its schedule is deleted; its runs stay readable.",
    **answers(AGENT_NOT_FOUND, *ACCOUNT_ACCESS, status=204, description="Deleted"),
)
@prefetch(prefetch_agent)
def delete_agent(agentId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None):  # noqa: N803
    agents.delete_agent(account_for(caller, workspace_id, "write"), agentId)
    return Response(status_code=204)


@app.post(
    "/agents/<agentId>/webhook-secret",
    tags=["Agents"],
    summary="Rotate a webhook agent's secret",
    **answers(
        AGENT_NOT_FOUND,
        ("VALIDATION_ERROR", "The agent is not a webhook agent"),
        *ACCOUNT_ACCESS,
        description="The new secret",
    ),
)
@prefetch(prefetch_agent)
def rotate_webhook_secret(
    agentId: str,
    caller: CurrentCaller,
    workspace_id: WorkspaceId = None,  # noqa: N803
) -> WebhookSecret:
    return agents.rotate_webhook_secret(account_for(caller, workspace_id, "write"), agentId)


@app.post(
    "/agents/<agentId>/runs",
    tags=["Runs"],
    summary="Start a run",
    description="The run is one Step Functions execution; poll GET /runs/{runId} (every 2-5 seconds) until its status "
    "is no longer running. The body's `input` is the run's input.",
    **answers(
        AGENT_NOT_FOUND,
        ("AGENT_INACTIVE", "The agent's isActive is false"),
        ("AGENT_ALREADY_RUNNING", "The agent has a run in progress (one at a time)"),
        ("NO_CREDITS", "The balance cannot pay the first model turn"),
        *ACCOUNT_ACCESS,
        status=202,
        description="The run, running",
    ),
)
@prefetch(prefetch_agent)
def start_run(
    agentId: str,
    caller: CurrentCaller,
    request: NewRun | None = None,
    workspace_id: WorkspaceId = None,  # noqa: N803
) -> RunView:
    account = account_for(caller, workspace_id, "write")
    agent = agents.find_agent(account, agentId)
    return runs.start_run(account, agent, request.input if request else None, "manual")


@app.get(
    "/agents/<agentId>/runs",
    tags=["Runs"],
    summary="An agent's runs, newest first",
    **answers(AGENT_NOT_FOUND, *ACCOUNT_ACCESS, description="A page of runs, without their steps"),
)
@prefetch(prefetch_agent)
def list_runs(
    agentId: str,  # noqa: N803
    caller: CurrentCaller,
    workspace_id: WorkspaceId = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> RunPage:
    return page_body(runs.list_runs(account_for(caller, workspace_id, "read"), agentId, limit, cursor))


RUN_NOT_FOUND = ("RUN_NOT_FOUND", "No run with this id in the account")


@app.get(
    "/runs/<runId>",
    tags=["Runs"],
    summary="A run with its steps",
    **answers(RUN_NOT_FOUND, *ACCOUNT_ACCESS, description="The run"),
)
def get_run(runId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> RunView:  # noqa: N803
    return runs.get_run(account_for(caller, workspace_id, "read"), runId)


@app.post(
    "/runs/<runId>/cancel",
    tags=["Runs"],
    summary="Cancel a running run",
    description="Answers once the agent is free to run again.",
    **answers(
        RUN_NOT_FOUND,
        ("RUN_NOT_CANCELLABLE", "The run has ended (it may have ended another way while being cancelled)"),
        *ACCOUNT_ACCESS,
        description="The run, cancelled",
    ),
)
def cancel_run(runId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> RunView:  # noqa: N803
    return runs.cancel_run(account_for(caller, workspace_id, "write"), runId)


lambda_handler = handler_for(app)
