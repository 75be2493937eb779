"""Settings: read once from the environment into a validated model.

Every knob the platform has is a field here, named as its environment
variable. A bad value fails the cold start loudly instead of a request later.
A plain pydantic model filled from `os.environ` (names matched case-insensitively,
as pydantic-settings did): pydantic-settings and python-dotenv cost every cold
start 15-35 ms of import for nothing else (issue 22).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, values: Any) -> Any:
        """`Settings()` reads the environment; values passed explicitly win."""
        if not isinstance(values, dict):
            return values
        environment = {name.lower(): value for name, value in os.environ.items()}
        read = {}
        for field in cls.model_fields.values():
            alias = field.validation_alias
            if isinstance(alias, str) and alias.lower() in environment:
                read[alias] = environment[alias.lower()]
        return {**read, **values}

    # The one DynamoDB table (see repositories/TABLE.md).
    table_name: str = Field("conduit", validation_alias="TABLE_NAME")
    # True only under the local stack (`make dev`, tests): allows http:// site
    # URLs on loopback and generated secrets instead of Secrets Manager.
    local_mode: bool = Field(False, validation_alias="LOCAL_MODE")
    # Environment name (dev, prod, local).
    stage: str = Field("local", validation_alias="STAGE")

    # Tiers file (API.md §9); unset means the default shipped in the layer.
    tiers_file: Path | None = Field(None, validation_alias="TIERS_FILE")

    # Authentication (API.md §2).
    admin_emails: str = Field("", validation_alias="ADMIN_EMAILS")  # comma separated
    terms_version: str = Field("2026-11-01", min_length=1, max_length=64, validation_alias="TERMS_VERSION")
    access_token_ttl_seconds: int = Field(900, ge=30, le=86400, validation_alias="ACCESS_TOKEN_TTL_SECONDS")
    refresh_token_ttl_seconds: int = Field(30 * 86400, ge=300, validation_alias="REFRESH_TOKEN_TTL_SECONDS")
    # Secrets Manager secret holding the JWT signing key (HS256).
    jwt_secret_id: str = Field("JwtSigningSecret", validation_alias="JWT_SECRET_ID")
    jwt_issuer: str = Field("conduit", validation_alias="JWT_ISSUER")
    jwt_audience: str = Field("conduit-api", validation_alias="JWT_AUDIENCE")

    # Chat (API.md §7).
    chat_timeout_seconds: float = Field(90, gt=0, le=900, validation_alias="CHAT_TIMEOUT_SECONDS")
    default_model: str = Field("local:echo", min_length=3, validation_alias="DEFAULT_MODEL")

    # Agents and runs (API.md §8).
    run_timeout_seconds: int = Field(900, ge=10, le=86400, validation_alias="RUN_TIMEOUT_SECONDS")
    run_state_machine_arn: str = Field("", validation_alias="RUN_STATE_MACHINE_ARN")
    schedule_group: str = Field("", validation_alias="SCHEDULE_GROUP")
    scheduler_role_arn: str = Field("", validation_alias="SCHEDULER_ROLE_ARN")
    schedule_target_arn: str = Field("", validation_alias="SCHEDULE_TARGET_ARN")
    webhook_base_url: str = Field("", validation_alias="WEBHOOK_BASE_URL")  # the webhooks Function URL

    # Site OAuth (API.md §11): the client id Conduit presents to every oauth2 site; empty means the
    # manifest's rule (site_oauth.py, manifests.oauth_client_id).
    site_oauth_client_id: str = Field("", max_length=256, pattern=r"^[!-~]*$", validation_alias="SITE_OAUTH_CLIENT_ID")

    # KMS key that encrypts site tokens in the vault.
    vault_key_id: str = Field("alias/VaultKey", validation_alias="VAULT_KEY_ID")

    # Billing (API.md §5, conduit/billing/stripe_api.py). The Stripe API key and webhook signing secret
    # come from the environment when set (local runs, tests); otherwise, outside local mode, from
    # the Secrets Manager secrets named by the *_ID variables (the template sets them).
    stripe_secret_key: SecretStr | None = Field(None, validation_alias="STRIPE_SECRET_KEY")
    stripe_webhook_secret: SecretStr | None = Field(None, validation_alias="STRIPE_WEBHOOK_SECRET")
    stripe_secret_key_id: str = Field("", validation_alias="STRIPE_SECRET_KEY_ID")
    stripe_webhook_secret_id: str = Field("", validation_alias="STRIPE_WEBHOOK_SECRET_ID")
    # Base URL of Stripe's API; empty means Stripe's own (https://api.stripe.com). Tests point it at loopback.
    stripe_api_base: str = Field("", validation_alias="STRIPE_API_BASE", pattern=r"^(https?://[^\s/]+)?$")
    # Stripe Price of each paid tier's subscription: "pro=price_…,harness=price_…,team=price_…".
    stripe_tier_prices: str = Field("", validation_alias="STRIPE_TIER_PRICES")
    # The function that runs auto top-ups (invoked asynchronously after a spend); empty disables the start.
    top_up_function: str = Field("", validation_alias="TOP_UP_FUNCTION")

    @field_validator("stripe_secret_key", "stripe_webhook_secret", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: object) -> object:
        return None if value == "" else value  # the template passes "" where no local value is set

    @field_validator("stripe_tier_prices")
    @classmethod
    def _tier_prices_are_well_formed(cls, value: str) -> str:
        for pair in filter(None, (part.strip() for part in value.split(","))):
            tier, _, price = pair.partition("=")
            if not tier.strip() or not price.strip():
                raise ValueError(f"{pair!r}: expected <tier>=<Stripe price id>")
        return value

    @property
    def tier_prices(self) -> dict[str, str]:
        """Paid tier → its Stripe Price id (tiers without one cannot be subscribed to)."""
        pairs = (part.split("=", 1) for part in self.stripe_tier_prices.split(",") if part.strip())
        return {tier.strip(): price.strip() for tier, price in pairs}

    def require(self, *fields: str) -> Settings:
        """These settings, which a function cannot work without, are set: checked at its cold start
        (Lambda reports the init error naming the variables), not inside some request later."""
        missing = [str(Settings.model_fields[name].validation_alias) for name in fields if not getattr(self, name)]
        if missing:
            raise ValueError(f"this function needs {', '.join(missing)} (empty or not set)")
        return self

    @property
    def admin_email_set(self) -> frozenset[str]:
        return frozenset(email.strip().lower() for email in self.admin_emails.split(",") if email.strip())


# What a function that starts agent runs, or one that also manages their schedules, cannot work
# without (`Settings.require`, at its cold start). The template sets them; so does the local stack.
RUNS_NEED = ("run_state_machine_arn",)
SCHEDULES_NEED = (*RUNS_NEED, "schedule_group", "scheduler_role_arn", "schedule_target_arn", "webhook_base_url")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
