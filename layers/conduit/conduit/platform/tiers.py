"""Subscription tiers: the tiers file (API.md §9) as a validated, read-once model.

The file is operator-edited JSON, so a mistake in it must stop the cold start
with a message naming the file and the exact field, not surface later as a
wrong limit. Hence strict integers (no `true` or `"5"` sneaking in as numbers),
`extra="forbid"` (a misspelt key is an error, not a silently ignored one) and
all four tiers required (the API names them; a missing one would be a 500).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from conduit.platform.errors import validation_error
from conduit.platform.settings import get_settings

# The default file ships inside the layer, next to this module (a symlink to
# shared/tiers.json in the repository, resolved when the layer is built).
DEFAULT_TIERS_FILE = Path(__file__).with_name("tiers.json")

TierName = Literal["free", "pro", "harness", "team"]
TIER_NAMES: tuple[str, ...] = get_args(TierName)
Feature = Literal["chat", "agents", "webhooks", "schedules", "workspaces"]

Count = Annotated[int, Field(strict=True, ge=0)]
Rate = Annotated[int, Field(strict=True, ge=1)]  # a rate of 0 would lock everyone out: surely a typo
Cost = Annotated[int, Field(strict=True, ge=1)]  # a free action could be repeated without bound


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class Tier(_FileModel):
    requests_per_minute: Rate
    # None (JSON null) means unlimited.
    max_agents: Count | None
    max_sites: Count | None
    max_workspace_members: Count | None
    max_api_keys: Count | None = 25  # API.md §13: optional in the file, default 25
    monthly_credits: Count
    features: frozenset[Feature]

    def allows(self, feature: str) -> bool:
        return feature in self.features

    def limit(self, counter: str) -> int | None:
        """The maximum of a counted limit (`limits.py` counter names); None means unlimited."""
        return getattr(self, _COUNTER_FIELDS[counter])


# Counter names (limits.py, the `COUNT#<name>` items) → the Tier field that caps them.
_COUNTER_FIELDS = {
    "agents": "max_agents",
    "sites": "max_sites",
    "workspaceMembers": "max_workspace_members",
    "apiKeys": "max_api_keys",
}


class Costs(_FileModel):
    model_turn: Cost
    tool_call: Cost


class CreditPack(_FileModel):
    credits: Annotated[int, Field(strict=True, ge=1)]
    price_usd: Annotated[Decimal, Field(gt=0, decimal_places=2)]


def _a_json_number(value: object) -> object:
    # Lax Decimal parsing would take "3.0" or true; an operator's typo should stop the cold start.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("must be a JSON number")
    return value


Number = BeforeValidator(_a_json_number)
Price = Annotated[Decimal, Number, Field(ge=0, allow_inf_nan=False)]


class ModelPrice(_FileModel):
    """USD per million tokens (API.md §15)."""

    input_usd_per_m_tok: Price = Field(alias="inputUsdPerMTok")
    output_usd_per_m_tok: Price = Field(alias="outputUsdPerMTok")


class Pricing(_FileModel):
    """Usage pricing of model turns (API.md §15): `max(1, ceil(usd / creditValueUsd × markup))`.
    Models are named as sessions name them (`provider:model`); others cost `costs.modelTurn`."""

    credit_value_usd: Annotated[Decimal, Number, Field(gt=0, allow_inf_nan=False)]
    markup: Annotated[Decimal, Number, Field(gt=0, allow_inf_nan=False)]
    models: dict[str, ModelPrice]

    @field_validator("models")
    @classmethod
    def _models_are_named_in_full(cls, models: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        unnamed = [name for name in models if ":" not in name.strip(":")]
        if unnamed:
            raise ValueError(f"name models as provider:model: {', '.join(unnamed)}")
        return models


class TiersConfig(_FileModel):
    tiers: dict[TierName, Tier]
    outgoing_calls_per_minute_per_domain: Rate
    unauthenticated_requests_per_minute: Rate
    signup_credits: Count
    past_due_grace_days: Count = 7  # API.md §4: "default 7"
    costs: Costs
    credit_packs: tuple[CreditPack, ...] = ()
    pricing: Pricing | None = None  # None: every model turn costs costs.modelTurn

    @field_validator("tiers")
    @classmethod
    def _every_tier_is_defined(cls, tiers: dict[str, Tier]) -> dict[str, Tier]:
        missing = [name for name in TIER_NAMES if name not in tiers]
        if missing:
            raise ValueError(f"missing tier(s): {', '.join(missing)}")
        return tiers

    @field_validator("credit_packs")
    @classmethod
    def _one_pack_per_amount(cls, packs: tuple[CreditPack, ...]) -> tuple[CreditPack, ...]:
        # A purchase names its pack by its credits (POST /billing/credits/purchase {credits}).
        amounts = [pack.credits for pack in packs]
        duplicates = sorted({amount for amount in amounts if amounts.count(amount) > 1})
        if duplicates:
            raise ValueError(f"two packs of the same credits: {', '.join(map(str, duplicates))}")
        return packs

    def tier_in_force(self, stored_tier: str, subscription_status: str | None, past_due_since: datetime | None, now: datetime) -> str:
        """The stored tier, or free once a past-due subscription has outlived `pastDueGraceDays`
        (API.md §4): computed on every read, so no sweep has to run on time."""
        if subscription_status != "past_due" or past_due_since is None:
            return stored_tier
        return "free" if now >= past_due_since + timedelta(days=self.past_due_grace_days) else stored_tier

    def tier(self, name: str) -> Tier:
        """The tier called `name`; an unknown name is the caller's input error."""
        tier = self.tiers.get(name)  # type: ignore[call-overload]
        if tier is None:
            raise validation_error("tier", f"must be one of {', '.join(TIER_NAMES)}")
        return tier


class TiersFileError(ValueError):
    """The tiers file is missing or invalid; the message names the file and each problem."""


def load_tiers(path: Path | str) -> TiersConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise TiersFileError(f"tiers file {path}: cannot be read ({error.strerror or error})") from None
    try:
        # Decimal keeps prices exact; it also makes a float where an int is
        # expected fail the strict int check instead of being truncated.
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise TiersFileError(
            f"tiers file {path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    try:
        return TiersConfig.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_describe(problem) for problem in error.errors())
        raise TiersFileError(f"tiers file {path}: {problems}") from None


def _describe(problem: dict) -> str:
    field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
    return f"{field}: {problem['msg']}"


@lru_cache(maxsize=1)
def get_tiers() -> TiersConfig:
    """The tiers in force: `TIERS_FILE` if set, else the default; read once per cold start."""
    return load_tiers(get_settings().tiers_file or DEFAULT_TIERS_FILE)
