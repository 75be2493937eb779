"""What route handlers of every function declare the same way: the caller, the account
selector, list parameters, strict request bodies and the list response."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, WithJsonSchema

from conduit.auth import Caller, current_caller
from conduit.repositories.base import Page

CurrentCaller = Annotated[Caller, Depends(current_caller)]
# Requests act on the caller's own account unless they name a workspace (API.md §4).
WorkspaceId = Annotated[str | None, Query(alias="workspaceId", min_length=1, max_length=64)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=1024)]


def _email_address(value: str) -> str:
    # pydantic's EmailStr check, imported when a body holds an address: EmailStr imports
    # email-validator (20-40 ms) at every cold start of a function that merely declares it.
    from pydantic.networks import validate_email

    return validate_email(value)[1]


# An email address of at most 254 characters, normalized, as EmailStr validates and documents it.
EmailAddress = Annotated[
    str, AfterValidator(_email_address), WithJsonSchema({"type": "string", "format": "email", "maxLength": 254})
]


class StrictBody(BaseModel):
    """Request bodies refuse unknown fields: a typo is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def page_body(page: Page) -> dict[str, Any]:
    return {"items": page.items, "nextCursor": page.next_cursor}
