"""Agent runs (API.md §8): start, read, cancel, and the one way a run ends.

A run is one Step Functions execution named by the run id. Starting takes the
agent's run lock (a conditional write, with a lease) in the same transaction
that records the run; whatever ends the run goes through `end_run`, which
moves it out of `running` once (a conditional update) and then frees the lock
if this run still holds it. Both halves are idempotent by run id, so the
finish step, a cancel, the execution-status rule and a lock found stale can
all race safely. The lease (run timeout plus a margin) is the last resort
when every notification of an ending is lost.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal, Self

from pydantic import Field

from conduit.platform.aws import stepfunctions_client
from conduit.platform.errors import ConduitError
from conduit.platform.ids import iso, new_id, parse_iso, utc_now
from conduit.models import FinishReason as ProviderFinishReason, compact
from conduit.platform.observability import logger
from conduit.billing.pricing import least_turn_cost
from conduit.repositories.accounts import Account
from conduit.repositories.agents import AgentsRepository
from conduit.repositories.base import Page
from conduit.repositories.runs import RUNNING, RunsRepository, run_item
from conduit.platform.settings import get_settings
from conduit.platform.views import Omitted, TokenUsage, View

LEASE_MARGIN_SECONDS = 120
# How an execution that ended without the finish step maps to a run's status.
EXECUTION_ENDINGS = {
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "TIMED_OUT": "timed_out",
    "ABORTED": "cancelled",
}
ENDING_ERRORS = {
    "failed": {"code": "RUN_FAILED", "message": "The run's execution failed"},
    "timed_out": {"code": "RUN_TIMED_OUT", "message": "The run exceeded RUN_TIMEOUT_SECONDS"},
    "cancelled": {"code": "RUN_CANCELLED", "message": "The run was cancelled"},
}


def execution_arn(run_id: str) -> str:
    machine = get_settings().run_state_machine_arn
    return machine.replace(":stateMachine:", ":execution:") + f":{run_id}"


# --- views --------------------------------------------------------------------------
RunStatus = Literal["running", "succeeded", "failed", "cancelled", "timed_out"]


class ModelStep(View):
    """A model turn of a run."""

    type: Literal["model"]
    round: int
    model: str
    text: str = Field(description="What the model said")
    toolCalls: list[str] = Field(
        description="The tools it asked for (their prefixed names), called in the tool steps that follow"
    )
    finishReason: Annotated[ProviderFinishReason | None, Omitted] = Field(
        None, description="Absent on steps recorded before API.md §14"
    )
    usage: Annotated[TokenUsage | None, Omitted] = Field(None, description="Absent on steps recorded before API.md §14")
    credits: int = Field(description="What the turn cost")
    startedAt: str
    durationMs: int


class ToolStep(View):
    """A tool call of a run."""

    type: Literal["tool"]
    round: int
    callIndex: int = Field(description="Which of the round's tool calls (from 0)")
    tool: str
    siteId: Annotated[str | None, Omitted] = Field(
        None, description="Absent when the model named a tool that does not exist"
    )
    arguments: dict[str, Any]
    status: Literal["ok", "error"]
    result: Any = Field(
        description='What the tool answered (as chat\'s tool_result), or `{"truncated": "<its first 4 KiB of JSON>"}` when longer'
    )
    credits: int
    startedAt: str
    durationMs: int


Step = Annotated[ModelStep | ToolStep, Field(discriminator="type")]


def _step(step: dict[str, Any]) -> ModelStep | ToolStep:
    """A stored step item as the API shows it."""
    fields = {key: value for key, value in step.items() if key not in ("PK", "SK", "argumentsJson", "resultJson")}
    if "argumentsJson" in step:
        fields["arguments"] = json.loads(step["argumentsJson"])
    if "resultJson" in step:  # a tool's result as chat's tool_result has it; over 4 KiB: {"truncated": "<first 4 KiB>"}
        fields["result"] = json.loads(step["resultJson"])
    return (ToolStep if step["type"] == "tool" else ModelStep).model_validate(fields)


def usage_of(steps: list[dict[str, Any]]) -> dict[str, int]:
    """Tokens the run's model turns used (API.md §14), summed over its model steps."""
    usages = [step.get("usage") or {} for step in steps if step.get("type") == "model"]
    return {name: sum(int(usage.get(name) or 0) for usage in usages) for name in ("inputTokens", "outputTokens")}


class RunError(View):
    code: str = Field(
        description="RUN_CANCELLED, RUN_TIMED_OUT, RUN_FAILED, RUN_NOT_STARTED or a catalogue code (docs/API.md)"
    )
    message: str


class RunView(View):
    """A run of an agent (API.md §8)."""

    id: str
    agentId: str
    accountId: str
    status: RunStatus
    trigger: Literal["manual", "webhook", "scheduled", "mcp"]
    input: Any = Field(description="The run's input (any JSON; null without one)")
    output: str | None = Field(description="The model's final answer, once the run succeeded")
    error: RunError | None = Field(description="Why a run that did not succeed ended")
    creditsUsed: int
    usage: TokenUsage = Field(description="Summed over the run's model turns")
    startedAt: str
    endedAt: str | None
    steps: Annotated[list[Step] | None, Omitted] = Field(
        None, description="Its model turns and tool calls in order (a single run; not in lists)"
    )

    @classmethod
    def of(cls, run: dict[str, Any], steps: list[dict[str, Any]] | None = None) -> Self:
        credits_used = int(run.get("creditsUsed") or 0)
        usage = {name: int((run.get("usage") or {}).get(name) or 0) for name in ("inputTokens", "outputTokens")}
        if steps is not None and run["status"] == RUNNING:  # settled into the run when it ends
            credits_used = sum(int(step.get("credits") or 0) for step in steps)
            usage = usage_of(steps)
        return cls(
            id=run["runId"],
            agentId=run["agentId"],
            accountId=run["accountId"],
            status=run["status"],
            trigger=run["trigger"],
            input=json.loads(run["inputJson"]),
            output=run.get("output"),
            error=json.loads(run["errorJson"]) if run.get("errorJson") else None,
            creditsUsed=credits_used,
            usage=usage,
            startedAt=run["startedAt"],
            endedAt=run.get("endedAt"),
            steps=[_step(step) for step in steps] if steps is not None else None,
        )


# --- ending -------------------------------------------------------------------------
def end_run(
    run: dict[str, Any], status: str, *, output: str | None = None, error: dict[str, str] | None = None
) -> bool:
    """End a running run once and free its agent; False (changing nothing) if it had already ended.
    The lock is released whether or not this call ended the run: releasing by run id is idempotent."""
    repository = RunsRepository()
    _, steps = repository.run_with_steps(run["runId"])
    values: dict[str, Any] = {
        "status": status,
        "endedAt": iso(utc_now()),
        "creditsUsed": sum(int(step.get("credits") or 0) for step in steps),
        "usage": usage_of(steps),
    }
    if output is not None:
        values["output"] = output
    if error is not None:
        values["errorJson"] = compact(error)
    ended = repository.end(run["runId"], values)
    AgentsRepository().release_run_lock(run["agentId"], run["runId"])
    if ended:
        logger.info("run ended", extra={"runId": run["runId"], "status": status, "code": (error or {}).get("code")})
    return ended


def reconcile(run: dict[str, Any]) -> dict[str, Any]:
    """A run still `running` whose execution has ended (its ending was never recorded): end it now."""
    if run["status"] != RUNNING:
        return run
    client = stepfunctions_client()
    try:
        execution = client.describe_execution(executionArn=execution_arn(run["runId"]))
    except client.exceptions.ExecutionDoesNotExist:
        status = "failed"  # the start never reached Step Functions
    else:
        if execution["status"] in ("RUNNING", "PENDING_REDRIVE"):
            return run
        status = EXECUTION_ENDINGS.get(execution["status"], "failed")
    end_run(run, status, error=ENDING_ERRORS.get(status))
    return RunsRepository().find(run["runId"]) or run


def stop_run(run_id: str) -> None:
    """Stop a run's execution and end it as cancelled (idempotent)."""
    run = RunsRepository().find(run_id)
    if run is None or run["status"] != RUNNING:
        return
    client = stepfunctions_client()
    try:
        client.stop_execution(executionArn=execution_arn(run_id), cause="Cancelled through the API")
    except client.exceptions.ExecutionDoesNotExist:
        pass  # never started, or already gone: ending the run is what matters
    end_run(run, "cancelled", error=ENDING_ERRORS["cancelled"])


# --- operations ---------------------------------------------------------------------
def start_run(account: Account, agent: dict[str, Any], run_input: Any, trigger: str) -> dict[str, Any]:
    """Start a run: 409 AGENT_ALREADY_RUNNING while another holds the agent, 402 NO_CREDITS when the
    balance cannot pay the first model turn (later turns that cannot be paid fail the run)."""
    if not agent["isActive"]:
        raise ConduitError("AGENT_INACTIVE")
    if account.credits < least_turn_cost(agent["model"]):
        raise ConduitError("NO_CREDITS")
    settings = get_settings()
    now = utc_now()
    run = {
        "runId": new_id("run"),
        "agentId": agent["agentId"],
        "accountId": account.account_id,
        "status": RUNNING,
        "trigger": trigger,
        "inputJson": compact(run_input),
        "startedAt": iso(now),
    }
    lease_until = int(now.timestamp()) + settings.run_timeout_seconds + LEASE_MARGIN_SECONDS
    agents = AgentsRepository()
    if not agents.lock_and_put_run(agent["agentId"], run_item(run), int(now.timestamp()), lease_until):
        current = agents.find(agent["agentId"])
        if current is None:
            raise ConduitError("AGENT_NOT_FOUND")
        holding_run = RunsRepository().find(current["activeRunId"]) if current.get("activeRunId") else None
        # A holder whose execution has ended (an ending never recorded) is ended now; then try once more.
        if holding_run is None or reconcile(holding_run)["status"] == RUNNING:
            raise ConduitError("AGENT_ALREADY_RUNNING")
        if not agents.lock_and_put_run(agent["agentId"], run_item(run), int(now.timestamp()), lease_until):
            raise ConduitError("AGENT_ALREADY_RUNNING")
    client = stepfunctions_client()
    try:
        client.start_execution(
            stateMachineArn=settings.run_state_machine_arn,
            name=run["runId"],
            input=compact({"runId": run["runId"], "agentId": agent["agentId"], "accountId": account.account_id}),
        )
    except Exception:
        # Nothing will run it: end it at once so the agent is free, then report the fault.
        end_run(run, "failed", error={"code": "RUN_NOT_STARTED", "message": "The run could not be started"})
        logger.exception("StartExecution failed", extra={"runId": run["runId"]})
        raise ConduitError("INTERNAL_ERROR") from None
    return RunView.of(run, []).body()


def find_run(account: Account, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run, steps = RunsRepository().run_with_steps(run_id) if len(run_id) <= 64 else (None, [])
    if run is None or run["accountId"] != account.account_id:
        raise ConduitError("RUN_NOT_FOUND")
    return run, steps


def get_run(account: Account, run_id: str) -> dict[str, Any]:
    run, steps = find_run(account, run_id)
    if run["status"] == RUNNING and _past_deadline(run):
        run = reconcile(run)  # its ending was lost; the execution knows
        run, steps = find_run(account, run_id)
    return RunView.of(run, steps).body()


def list_runs(account: Account, agent_id: str, limit: int, cursor: str | None) -> Page:
    agent = AgentsRepository().find_owned(account.account_id, agent_id)
    page = RunsRepository().list_runs(agent["agentId"], limit, cursor)
    return Page(items=[RunView.of(run).body() for run in page.items], next_cursor=page.next_cursor)


def cancel_run(account: Account, run_id: str) -> dict[str, Any]:
    """Stop the run's execution and end it as cancelled; answers once the agent is free again."""
    run, _ = find_run(account, run_id)
    if run["status"] != RUNNING:
        raise ConduitError("RUN_NOT_CANCELLABLE")
    stop_run(run_id)
    run, steps = find_run(account, run_id)
    if run["status"] != "cancelled":  # it ended another way first (a completion won the race)
        raise ConduitError("RUN_NOT_CANCELLABLE")
    return RunView.of(run, steps).body()


def _past_deadline(run: dict[str, Any]) -> bool:
    started = parse_iso(run["startedAt"]).timestamp()
    return time.time() > started + get_settings().run_timeout_seconds
