from __future__ import annotations

import pytest
from pydantic import ValidationError

from conduit.platform.settings import Settings


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TABLE_NAME", "my-table")
    monkeypatch.setenv("LOCAL_MODE", "false")
    settings = Settings()
    assert settings.table_name == "my-table"
    assert settings.local_mode is False


def test_a_bad_value_fails_loudly_naming_the_variable(monkeypatch):
    monkeypatch.setenv("LOCAL_MODE", "sometimes")
    with pytest.raises(ValidationError, match="LOCAL_MODE"):
        Settings()


def test_a_setting_a_function_needs_fails_its_cold_start_naming_the_variable(monkeypatch):
    from conduit.platform.settings import RUNS_NEED, SCHEDULES_NEED

    monkeypatch.delenv("RUN_STATE_MACHINE_ARN", raising=False)
    monkeypatch.setenv("SCHEDULE_GROUP", "agents")
    with pytest.raises(ValueError, match="needs RUN_STATE_MACHINE_ARN, SCHEDULER_ROLE_ARN"):
        Settings().require(*SCHEDULES_NEED)
    monkeypatch.setenv("RUN_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:run")
    assert Settings().require(*RUNS_NEED).run_state_machine_arn.endswith(":run")


def test_the_functions_that_start_runs_say_what_they_need(monkeypatch):
    """Each function's module states its needs at import (its cold start): without the state
    machine's ARN, the agents, webhooks, /mcp and run-step functions refuse to start."""
    import runpy
    from pathlib import Path

    from conduit.platform.settings import get_settings

    root = Path(__file__).resolve().parents[1]
    monkeypatch.delenv("RUN_STATE_MACHINE_ARN", raising=False)
    for function in ("agents", "webhooks", "mcp", "run_steps"):
        get_settings.cache_clear()
        with pytest.raises(ValueError, match="RUN_STATE_MACHINE_ARN"):
            runpy.run_path(str(root / "functions" / function / "app.py"))
    get_settings.cache_clear()
