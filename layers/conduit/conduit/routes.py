"""What route handlers of every function declare the same way: the caller, the account
selector, list parameters, strict request bodies and the list response."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict

from conduit.auth import Caller, current_caller
from conduit.repositories.base import Page

CurrentCaller = Annotated[Caller, Depends(current_caller)]
# Requests act on the caller's own account unless they name a workspace (API.md §4).
WorkspaceId = Annotated[str | None, Query(alias="workspaceId", min_length=1, max_length=64)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=1024)]


class StrictBody(BaseModel):
    """Request bodies refuse unknown fields: a typo is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def page_body(page: Page) -> dict[str, Any]:
    return {"items": page.items, "nextCursor": page.next_cursor}
