from __future__ import annotations

import pytest
from pydantic import ValidationError

from conduit.settings import Settings


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
