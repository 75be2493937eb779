"""Settings: read once from the environment into a validated model.

Every knob the platform has is a field here, named as its environment
variable. A bad value fails the cold start loudly instead of a request later.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

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

    # KMS key that encrypts site tokens in the vault.
    vault_key_id: str = Field("alias/VaultKey", validation_alias="VAULT_KEY_ID")

    @property
    def admin_email_set(self) -> frozenset[str]:
        return frozenset(email.strip().lower() for email in self.admin_emails.split(",") if email.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
