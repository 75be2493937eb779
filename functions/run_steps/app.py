"""Agent run steps: RunStateMachine's tasks, schedule firings and execution status changes.

Not behind API Gateway: Step Functions, EventBridge Scheduler and an
EventBridge rule invoke it directly, each with its own event shape.
"""

from __future__ import annotations

import time
from typing import Any

from conduit.agents import run_steps
from conduit.platform.observability import logger
from conduit.platform.settings import RUNS_NEED, get_settings

get_settings().require(*RUNS_NEED)  # at cold start: scheduled firings start runs

STEP_MARGIN_SECONDS = 5  # left to record the step after its model or tool call


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("detail-type") == "Step Functions Execution Status Change":
        return run_steps.execution_ended(event)
    step = event.get("step")
    if step == "scheduled_start":
        return run_steps.scheduled_start(str(event.get("agentId", "")))
    run_ids = event["run"]
    logger.append_keys(runId=run_ids.get("runId"), step=step)
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - STEP_MARGIN_SECONDS
    if step == "prepare":
        return run_steps.prepare(run_ids)
    if step == "model_turn":
        return run_steps.model_turn(run_ids, int(event["round"]), deadline)
    if step == "tool_call":
        return run_steps.tool_call(run_ids, int(event["round"]), int(event["call"]), deadline)
    if step == "finish":
        return run_steps.finish(run_ids, event.get("error"))
    raise ValueError(f"unknown step {step!r}")
