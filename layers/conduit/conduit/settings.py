"""Settings: read once from the environment into a validated model.

Every knob the platform has is a field here, named as its environment
variable. A bad value fails the cold start loudly instead of a request later.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    # The one DynamoDB table (see repositories/TABLE.md).
    table_name: str = Field("conduit", validation_alias="TABLE_NAME")
    # True only under the local stack (`make dev`, tests): allows http:// site
    # URLs on loopback and generated secrets instead of Secrets Manager.
    local_mode: bool = Field(False, validation_alias="LOCAL_MODE")
    # Environment name (dev, prod, local); shown by /health and in logs.
    stage: str = Field("local", validation_alias="STAGE")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
