"""Run-step rules that need no state machine: how a caught error is recorded, what the model sees."""

from __future__ import annotations

import json

from conduit.repositories.runs import RunsRepository, message_sk
from conduit.agents.run_steps import _history, _recorded_error
from conduit.vault.toolbox import HISTORY_MESSAGES


def lambda_error(error_type, message):
    return {"Error": error_type, "Cause": json.dumps({"errorType": error_type, "errorMessage": message})}


def test_a_step_failure_records_its_code_and_message():
    error = lambda_error("StepFailed", json.dumps({"code": "NO_CREDITS", "message": "The balance cannot pay"}))
    assert _recorded_error(error) == {"code": "NO_CREDITS", "message": "The balance cannot pay"}


def test_other_errors_record_the_error_name():
    assert _recorded_error(lambda_error("Sandbox.Timedout", "Task timed out"))["code"] == "Sandbox.Timedout"
    assert _recorded_error({"Error": "States.Runtime", "Cause": "bad path"}) == {"code": "States.Runtime", "message": "bad path"}
    assert _recorded_error({})["code"] == "States.TaskFailed"


def test_the_model_sees_the_task_and_the_latest_messages_never_an_orphan_tool_result(aws):
    runs = RunsRepository()
    runs.put_message("run_1", message_sk(0), {"role": "user", "content": "the task"})
    for round_number in range(1, 12):  # each round: one assistant call and its result
        call = {"id": f"c{round_number}", "name": "t", "arguments": {}}
        runs.put_message("run_1", message_sk(round_number), {"role": "assistant", "content": "", "toolCallsJson": json.dumps([call])})
        runs.put_message("run_1", message_sk(round_number, 0), {"role": "tool", "content": "{}", "toolCallId": f"c{round_number}"})
    history = _history("run_1")
    assert len(history) <= HISTORY_MESSAGES
    assert history[0].content == "the task"
    assert history[1].role == "assistant" and history[1].tool_calls
    assert history[-1].role == "tool" and history[-1].tool_call_id == "c11"


def test_run_steps_load_neither_chat_nor_the_rest_resolver() -> None:
    """The run-step function never routes HTTP: importing its domain module loads no resolver and no
    chat exchange (the tool loop's shared parts are in conduit.vault.toolbox and conduit.vault.tool_calls)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, conduit.agents.run_steps;"
        "loaded = [m for m in ('aws_lambda_powertools.event_handler', 'conduit.chat.exchange', 'conduit.http.api') if m in sys.modules];"
        "assert not loaded, loaded"
    )
    env = {**os.environ, "PYTHONPATH": str(root / "layers" / "conduit")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)
