"""The steps of an agent run, as RunStateMachine's tasks call them (shared/statemachines/agent_run.asl.json).

Each step reads what it needs from DynamoDB (the run, the agent, the
transcript) and writes its result there; the state machine carries only the
round number and the indexes of a turn's tool calls. Credits are spent per
model turn and per tool call as in chat, under a key made of the run id and
the step, so a step Step Functions retries never pays twice.

How a step ends, for the state machine:
- returns: done;
- raises TransientStepError: retried with backoff and jitter (site unreachable, model failure);
- raises StepFailed: not retried; the run fails with the code in the message.
The exception class names are the ASL's error names.
"""

from __future__ import annotations

import json
import time
from typing import Any

from conduit.billing import credits
from conduit.billing.pricing import least_turn_cost
from conduit.agents.definitions import TRIGGER_FEATURES
from conduit.platform.errors import ConduitError
from conduit.platform.ids import iso, parse_iso, utc_now
from conduit.models import Message, ToolCall, compact, resolve_model
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.agents import AgentsRepository
from conduit.repositories.runs import RUNNING, RunsRepository, message_sk, step_sk
from conduit.agents.runs import ENDING_ERRORS, EXECUTION_ENDINGS, end_run, start_run
from conduit.platform.settings import get_settings
from conduit.platform.tiers import get_tiers
from conduit.vault.toolbox import HISTORY_MESSAGES, available_tools

STORED_RESULT_CHARS = 64 * 1024  # a DynamoDB item holds 400 KB; the model sees at most this much of a result
STEP_RESULT_CHARS = 4 * 1024  # what a tool step shows of its result (GET /runs/{id}); the run's reader needs a glimpse, not the page
TRANSIENT_CODES = frozenset({"SITE_UNAVAILABLE", "MODEL_ERROR", "CHAT_TIMEOUT"})


class TransientStepError(Exception):
    """The step may succeed if retried."""

    expected = True  # an outcome the state machine handles (Retry), not a fault: logged in one line


class StepFailed(Exception):
    """The run cannot go on; the message is the error recorded on the run."""

    expected = True  # handled by the state machine's Catch (a cancelled or ended run included)


def _failure(error: ConduitError) -> Exception:
    detail = compact({"code": error.code, "message": error.message})
    return TransientStepError(detail) if error.code in TRANSIENT_CODES else StepFailed(detail)


def _running_run(run_ids: dict[str, str]) -> dict[str, Any]:
    run = RunsRepository().find(run_ids["runId"])
    if run is None or run["status"] != RUNNING:
        raise StepFailed(compact({"code": "RUN_ENDED", "message": "The run has already ended"}))
    return run


def _agent(run: dict[str, Any]) -> dict[str, Any]:
    agent = AgentsRepository().find(run["agentId"])
    if agent is None or agent["accountId"] != run["accountId"]:
        raise StepFailed(compact({"code": "AGENT_NOT_FOUND", "message": "The agent was deleted"}))
    return agent


def _account(account_id: str) -> Any:
    account = AccountsRepository().get(account_id)
    if account is None:
        raise StepFailed(compact({"code": "NOT_FOUND", "message": "The account no longer exists"}))
    return account


def _run_deadline(run: dict[str, Any]) -> float:
    """The run's own deadline on this machine's monotonic clock."""
    ends_at = parse_iso(run["startedAt"]).timestamp() + get_settings().run_timeout_seconds
    return time.monotonic() + (ends_at - time.time())


def _tools(run: dict[str, Any], agent: dict[str, Any]) -> dict[str, Any]:
    return available_tools(_account(run["accountId"]), {"siteIds": agent.get("siteIds")})


# --- prepare ------------------------------------------------------------------------
def prepare(run_ids: dict[str, str]) -> dict[str, Any]:
    """Check the run can begin and record its first message: the run input as compact JSON (`null`
    when none). The agent's prompt is not in it: each model turn sends it as the system prompt."""
    run = _running_run(run_ids)
    agent = _agent(run)
    if _account(run["accountId"]).credits < least_turn_cost(agent["model"]):
        raise StepFailed(compact({"code": "NO_CREDITS", "message": "The balance cannot pay a model turn"}))
    RunsRepository().put_message(run["runId"], message_sk(0), {"role": "user", "content": run["inputJson"]})
    return {"round": 0}


# --- model turn -----------------------------------------------------------------------
def _history(run_id: str) -> list[Message]:
    """The first message (the task) and the latest ones, at most HISTORY_MESSAGES in all.
    A window never starts with tool results whose call it cut off: providers refuse those."""
    stored = RunsRepository().transcript(run_id)
    messages = [
        Message(
            role=item["role"],
            content=item.get("content") or "",
            tool_calls=tuple(ToolCall(**call) for call in json.loads(item.get("toolCallsJson") or "[]")),
            tool_call_id=item.get("toolCallId"),
        )
        for item in stored
    ]
    if len(messages) <= HISTORY_MESSAGES:
        return messages
    recent = messages[-(HISTORY_MESSAGES - 1) :]
    while recent and recent[0].role == "tool":
        recent = recent[1:]
    return [messages[0], *recent]


def model_turn(run_ids: dict[str, str], previous_round: int, step_deadline: float) -> dict[str, Any]:
    run = _running_run(run_ids)
    agent = _agent(run)
    round_number = previous_round + 1
    provider, model_id = resolve_model(agent["model"])
    tools = _tools(run, agent)
    messages = _history(run["runId"])
    started, started_at = time.monotonic(), iso(utc_now())
    deadline = min(step_deadline, _run_deadline(run))
    specs = [tool.spec for tool in tools.values()]
    try:
        # Held before the call, settled after; a retry of this step (same key) takes over its hold.
        with credits.hold_model_turn(
            run["accountId"], agent["model"], messages, specs, f"agent run: model turn {round_number}",
            key=f"{run['runId']}:model:{round_number}", lease_until=time.time() + max(0.0, deadline - time.monotonic()) + 60,
            system=agent["systemPrompt"],
        ) as hold:
            turn = provider.complete(model_id, messages, specs, deadline=deadline, system=agent["systemPrompt"])
            cost = hold.settle(turn.usage)
    except ConduitError as error:
        raise _failure(error) from None
    runs = RunsRepository()
    calls = [{"id": call.id, "name": call.name, "arguments": call.arguments} for call in turn.tool_calls]
    runs.put_message(
        run["runId"],
        message_sk(round_number),
        {"role": "assistant", "content": turn.text, "toolCallsJson": compact(calls)},
    )
    runs.put_step(
        run["runId"],
        step_sk(round_number),
        {
            "type": "model",
            "round": round_number,
            "model": agent["model"],
            "text": turn.text,
            "toolCalls": [call["name"] for call in calls],
            "finishReason": turn.finish_reason,
            "usage": {"inputTokens": turn.usage.input_tokens, "outputTokens": turn.usage.output_tokens},
            "credits": cost,
            "startedAt": started_at,
            "durationMs": int((time.monotonic() - started) * 1000),
        },
    )
    return {
        "round": round_number,
        "toolCalls": list(range(len(calls))),
        "hasToolCalls": bool(calls),
        "lastRound": round_number >= int(agent["maxRounds"]),
    }


# --- tool call ------------------------------------------------------------------------
def tool_call(run_ids: dict[str, str], round_number: int, call_index: int, step_deadline: float) -> dict[str, Any]:
    """Call one tool the model asked for. At the outgoing per-domain limit, answer how long to wait
    (the state machine waits, then calls again) instead of failing the run."""
    run = _running_run(run_ids)
    agent = _agent(run)
    runs = RunsRepository()
    asked = runs.message(run["runId"], message_sk(round_number)) or {}
    call = json.loads(asked.get("toolCallsJson") or "[]")[call_index]
    tools = _tools(run, agent)
    tool = tools.get(call["name"])
    started = time.monotonic()
    step = {
        "type": "tool",
        "round": round_number,
        "callIndex": call_index,
        "tool": call["name"],
        "siteId": tool.site["siteId"] if tool else None,
        "argumentsJson": compact(call["arguments"]),
        "startedAt": iso(utc_now()),
        "credits": 0,
    }
    if tool is None:  # a tool the model invented: the model is told, the run goes on
        result, status = compact({"error": f"There is no tool named {call['name']}"}), "error"
    else:
        def charge(cost: int) -> None:
            credits.spend(
                run["accountId"], cost, f"agent run: tool call {round_number}.{call_index + 1}", key=f"{run['runId']}:tool:{round_number}:{call_index}"
            )
            step["credits"] = cost

        def remaining() -> float:
            return max(0.1, min(step_deadline, _run_deadline(run)) - time.monotonic())

        from conduit.vault.tool_calls import run_site_tool  # the site-call stack only in the tool step

        try:
            outcome = run_site_tool(run["accountId"], tool.site, call["name"], call["arguments"], charge=charge, remaining=remaining)
            result, status = compact(outcome), "ok"
        except ConduitError as error:
            if error.code == "OUTGOING_RATE_LIMITED":  # nothing was charged: the state machine waits, then calls again
                return {"waitSeconds": int(error.headers.get("Retry-After", "1"))}
            if error.code != "VALIDATION_ERROR":
                raise _failure(error) from None
            result, status = compact(error.body()), "error"  # arguments failing the schema go back to the model
    step["resultJson"] = result if len(result) <= STEP_RESULT_CHARS else compact({"truncated": result[:STEP_RESULT_CHARS]})
    if len(result) > STORED_RESULT_CHARS:
        result = result[:STORED_RESULT_CHARS] + "…(truncated)"
    runs.put_message(
        run["runId"],
        message_sk(round_number, call_index),
        {"role": "tool", "content": result, "toolCallId": call["id"]},
    )
    runs.put_step(
        run["runId"],
        step_sk(round_number, call_index),
        {**step, "status": status, "durationMs": int((time.monotonic() - started) * 1000)},
    )
    return {"waitSeconds": 0}


# --- endings --------------------------------------------------------------------------
def finish(run_ids: dict[str, str], error: dict[str, Any] | None) -> dict[str, Any]:
    """Record how the run ended (success, or the error Catch passed on) and free the agent."""
    run = RunsRepository().find(run_ids["runId"])
    if run is None:
        return {"status": "unknown"}
    if error is None:
        transcript = RunsRepository().transcript(run["runId"])
        answers = [item for item in transcript if item["role"] == "assistant"]
        end_run(run, "succeeded", output=answers[-1].get("content", "") if answers else "")
        return {"status": "succeeded"}
    end_run(run, "failed", error=_recorded_error(error))
    return {"status": "failed"}


def _recorded_error(error: dict[str, Any]) -> dict[str, str]:
    """Catch's {Error, Cause}: our steps put {code, message} in the Lambda error's message."""
    name, cause = str(error.get("Error") or "States.TaskFailed"), error.get("Cause") or ""
    try:
        payload = json.loads(cause)
        detail = json.loads(payload.get("errorMessage", ""))
        if isinstance(detail, dict) and "code" in detail:
            return {"code": str(detail["code"]), "message": str(detail.get("message", ""))}
    except (ValueError, TypeError, AttributeError):
        pass
    return {"code": name, "message": str(cause)[:1000] or name}


def execution_ended(event: dict[str, Any]) -> dict[str, Any]:
    """EventBridge "Step Functions Execution Status Change": end a run the state machine could not
    (stopped outside the API, timed out as a whole, failed without reaching RecordFailure)."""
    detail = event.get("detail") or {}
    run = RunsRepository().find(str(detail.get("name", "")))
    status = EXECUTION_ENDINGS.get(str(detail.get("status")))
    if run is None or status is None:
        return {"ended": False}
    return {"ended": end_run(run, status, error=ENDING_ERRORS.get(status))}


def scheduled_start(agent_id: str) -> dict[str, Any]:
    """A schedule fired: start a run as a manual start would. A run that cannot start (one is
    active, no credits, tier lost) is skipped, not retried: the next firing tries again."""
    agent = AgentsRepository().find(agent_id)
    if agent is None or agent["triggerType"] != "scheduled":
        return {"started": False, "reason": "AGENT_NOT_FOUND"}
    account = _account(agent["accountId"])
    try:
        if not get_tiers().tier(account.tier).allows(TRIGGER_FEATURES["scheduled"]):
            raise ConduitError("TIER_REQUIRED")
        run = start_run(account, agent, None, "scheduled")
    except ConduitError as error:
        return {"started": False, "reason": error.code}
    return {"started": True, "runId": run["id"]}
