"""/agents and /runs: agents, their runs on Step Functions, webhook secrets (API.md §8)."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import Field, StrictBool, StrictInt

from conduit import agents, runs
from conduit.access import account_for
from conduit.api import handler_for, make_resolver
from conduit.auth import prefetch
from conduit.repositories.agents import prefetch_agent
from conduit.routes import Cursor, CurrentCaller, Limit, StrictBody, WorkspaceId, page_body
from conduit.settings import SCHEDULES_NEED

app = make_resolver(needs=SCHEDULES_NEED)
Trigger = Literal["manual", "webhook", "scheduled"]


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


@app.post("/agents", tags=["Agents"], summary="Create an agent", status_code=201)
def create_agent(request: NewAgent, caller: CurrentCaller) -> dict:
    account = account_for(caller, request.workspaceId, "write")
    return agents.create_agent(account, request.model_dump(exclude={"workspaceId"}))


@app.get("/agents", tags=["Agents"], summary="The account's agents, newest first")
def list_agents(caller: CurrentCaller, workspace_id: WorkspaceId = None, limit: Limit = 20, cursor: Cursor = None) -> dict:
    return page_body(agents.list_agents(account_for(caller, workspace_id, "read"), limit, cursor))


@app.get("/agents/<agentId>", tags=["Agents"], summary="An agent")
@prefetch(prefetch_agent)
def get_agent(agentId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> dict:  # noqa: N803
    return agents.agent_view(agents.find_agent(account_for(caller, workspace_id, "read"), agentId))


@app.patch("/agents/<agentId>", tags=["Agents"], summary="Change an agent")
@prefetch(prefetch_agent)
def update_agent(agentId: str, request: AgentFields, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> dict:  # noqa: N803
    account = account_for(caller, workspace_id, "write")
    return agents.update_agent(account, agentId, request.model_dump(exclude_unset=True))


@app.delete("/agents/<agentId>", tags=["Agents"], summary="Delete an agent (its active run is cancelled)", status_code=204)
@prefetch(prefetch_agent)
def delete_agent(agentId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None):  # noqa: N803
    agents.delete_agent(account_for(caller, workspace_id, "write"), agentId)
    return Response(status_code=204)


@app.post("/agents/<agentId>/webhook-secret", tags=["Agents"], summary="Rotate a webhook agent's secret")
@prefetch(prefetch_agent)
def rotate_webhook_secret(agentId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> dict:  # noqa: N803
    return agents.rotate_webhook_secret(account_for(caller, workspace_id, "write"), agentId)


@app.post("/agents/<agentId>/runs", tags=["Runs"], summary="Start a run", status_code=202)
@prefetch(prefetch_agent)
def start_run(agentId: str, caller: CurrentCaller, request: NewRun | None = None, workspace_id: WorkspaceId = None) -> dict:  # noqa: N803
    account = account_for(caller, workspace_id, "write")
    agent = agents.find_agent(account, agentId)
    return runs.start_run(account, agent, request.input if request else None, "manual")


@app.get("/agents/<agentId>/runs", tags=["Runs"], summary="An agent's runs, newest first")
@prefetch(prefetch_agent)
def list_runs(
    agentId: str,  # noqa: N803
    caller: CurrentCaller,
    workspace_id: WorkspaceId = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> dict:
    return page_body(runs.list_runs(account_for(caller, workspace_id, "read"), agentId, limit, cursor))


@app.get("/runs/<runId>", tags=["Runs"], summary="A run with its steps")
def get_run(runId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> dict:  # noqa: N803
    return runs.get_run(account_for(caller, workspace_id, "read"), runId)


@app.post("/runs/<runId>/cancel", tags=["Runs"], summary="Cancel a running run")
def cancel_run(runId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> dict:  # noqa: N803
    return runs.cancel_run(account_for(caller, workspace_id, "write"), runId)


lambda_handler = handler_for(app)
