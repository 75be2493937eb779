"""The tiers file: the default loads, mistakes are refused naming the file and field, TIERS_FILE overrides."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from conduit.platform.errors import ConduitError
from conduit.platform.settings import get_settings
from conduit.platform.tiers import DEFAULT_TIERS_FILE, TIER_NAMES, TiersFileError, get_tiers, load_tiers

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = json.loads((ROOT / "shared" / "tiers.json").read_text())


@pytest.fixture
def fresh_caches():
    get_tiers.cache_clear()
    get_settings.cache_clear()
    yield
    get_tiers.cache_clear()
    get_settings.cache_clear()


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "tiers.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def changed(change) -> dict:
    data = copy.deepcopy(DEFAULT)
    change(data)
    return data


def test_the_layer_ships_the_project_file():
    assert DEFAULT_TIERS_FILE.is_symlink()
    assert DEFAULT_TIERS_FILE.resolve() == (ROOT / "shared" / "tiers.json").resolve()


def test_the_default_file_loads_with_the_api_md_example_values(fresh_caches, monkeypatch):
    monkeypatch.delenv("TIERS_FILE", raising=False)
    tiers = get_tiers()
    assert set(tiers.tiers) == set(TIER_NAMES)
    free = tiers.tier("free")
    assert (free.requests_per_minute, free.max_agents, free.max_sites, free.max_workspace_members) == (60, 2, 3, 0)
    assert free.monthly_credits == 100 and free.features == {"chat", "agents"}
    assert not free.allows("webhooks") and tiers.tier("pro").allows("webhooks")
    assert tiers.tier("team").allows("workspaces") and tiers.tier("team").max_workspace_members == 5
    assert tiers.tier("team").max_agents is None  # null: unlimited
    assert tiers.tier("team").limit("agents") is None and free.limit("sites") == 3
    assert tiers.outgoing_calls_per_minute_per_domain == 10 and tiers.unauthenticated_requests_per_minute == 30
    assert tiers.past_due_grace_days == 7 and tiers.costs.model_turn == 1 and tiers.costs.tool_call == 1
    assert [(pack.credits, pack.price_usd) for pack in tiers.credit_packs] == [
        (250, 5), (600, 10), (1300, 20), (3500, 50)
    ]
    assert get_tiers() is tiers  # read once


def test_an_unknown_tier_name_is_a_validation_error():
    with pytest.raises(ConduitError) as raised:
        load_tiers(DEFAULT_TIERS_FILE).tier("gold")
    assert raised.value.code == "VALIDATION_ERROR"
    assert raised.value.details[0]["field"] == "tier"


def set_free(**values) -> dict:
    return changed(lambda data: data["tiers"]["free"].update(values))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"tiers": {\n  "free": }', "invalid JSON at line 2, column 11"),
        (changed(lambda data: data["tiers"].pop("team")), "tiers: Value error, missing tier(s): team"),
        (set_free(maxAgents=-1), "tiers.free.maxAgents: Input should be greater than or equal to 0"),
        (changed(lambda data: data["tiers"]["pro"].update(maxAgent=3)), "tiers.pro.maxAgent: Extra inputs are not"),
        (changed(lambda data: data.update(signupCredit=5)), "signupCredit: Extra inputs are not permitted"),
        (set_free(maxSites="3"), "tiers.free.maxSites: Input should be a valid integer"),
        (set_free(maxSites=True), "tiers.free.maxSites: Input should be a valid integer"),
        (set_free(monthlyCredits=1.5), "tiers.free.monthlyCredits: Input should be a valid integer"),
        (set_free(features=["chat", "teleport"]), "tiers.free.features.1: Input should be"),
        (changed(lambda data: data["costs"].update(toolCall=0)), "costs.toolCall: Input should be greater than or"),
        (changed(lambda data: data["tiers"].update(gold=data["tiers"]["pro"])), "tiers.gold.[key]: Input should be"),
        (changed(lambda data: data.pop("signupCredits")), "signupCredits: Field required"),
        ("[]", "(top level): Input should be a valid dictionary"),
    ],
    ids=[
        "bad-json", "missing-tier", "negative", "unknown-tier-key", "unknown-top-key", "string-number",
        "bool-number", "float-number", "unknown-feature", "zero-cost", "unknown-tier", "missing-field", "not-object",
    ],
)
def test_a_malformed_file_is_refused_naming_the_file_and_the_problem(tmp_path, content, problem):
    path = write(tmp_path, content)
    with pytest.raises(TiersFileError) as raised:
        load_tiers(path)
    message = str(raised.value)
    assert message.startswith(f"tiers file {path}: ")
    assert problem in message


def test_every_problem_is_named_not_just_the_first(tmp_path):
    def two_mistakes(data):
        data["tiers"]["free"]["maxAgents"] = -1
        data["costs"]["modelTurn"] = 0

    message = str(pytest.raises(TiersFileError, load_tiers, write(tmp_path, changed(two_mistakes))).value)
    assert "tiers.free.maxAgents" in message and "costs.modelTurn" in message


def test_a_missing_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(TiersFileError, match=f"tiers file {path}: cannot be read"):
        load_tiers(path)


def test_tiers_file_overrides_the_default(tmp_path, monkeypatch, fresh_caches):
    path = write(tmp_path, changed(lambda data: data["tiers"]["free"].update(maxAgents=7)))
    monkeypatch.setenv("TIERS_FILE", str(path))
    assert get_tiers().tier("free").max_agents == 7


def test_a_bad_tiers_file_override_fails_loudly(tmp_path, monkeypatch, fresh_caches):
    monkeypatch.setenv("TIERS_FILE", str(write(tmp_path, "{")))
    with pytest.raises(TiersFileError, match="invalid JSON"):
        get_tiers()


def test_a_bad_tiers_file_fails_the_cold_start(tmp_path, monkeypatch):
    from conduit.http.api import make_resolver

    bad = tmp_path / "tiers.json"
    bad.write_text('{"tiers": {}}')
    monkeypatch.setenv("TIERS_FILE", str(bad))
    get_settings.cache_clear()
    get_tiers.cache_clear()
    try:
        with pytest.raises(TiersFileError, match="tiers.json"):
            make_resolver()
    finally:
        get_settings.cache_clear()
        get_tiers.cache_clear()
