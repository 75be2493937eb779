"""What route handlers of every function declare the same way: the caller, the account
selector, list parameters, strict request bodies, the list response, and the answers a route
documents (`answers`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Generic, TypeVar

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from conduit.identity.gate import Caller, current_caller
from conduit.platform.errors import CATALOGUE
from conduit.repositories.base import Page as StoredPage
from conduit.platform.views import View

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


Item = TypeVar("Item")


class Page(View, Generic[Item]):
    """A page of a list (API.md §1): `class AgentPage(Page[AgentView])`."""

    items: list[Item]
    nextCursor: str | None = Field(description="Pass it as `cursor` for the next page; null on the last page")


def page_body(page: StoredPage) -> dict[str, Any]:
    return {"items": page.items, "nextCursor": page.next_cursor}


# --- what a route answers, for the OpenAPI document -------------------------------------------


# A catalogue code, or (code, what it means on this route) when the catalogue's message says too little.
ErrorCode = str | tuple[str, str]
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}  # the error body's model is in shared/openapi.py
# What conduit.identity.access.account_for answers: a workspace the caller is not a member of (or an API key
# made for another account), a role that does not allow the action.
ACCOUNT_ACCESS: tuple[ErrorCode, ...] = (
    ("WORKSPACE_NOT_FOUND", "No workspace with this id of which the caller is a member"),
    ("PERMISSION_DENIED", "The caller's workspace role does not allow this, or an API key made for another account"),
)


def error_line(code: str, note: str | None = None) -> str:
    return f"- `{code}`: {note or CATALOGUE[code].message}"


def error_responses(codes: Iterable[ErrorCode]) -> dict[int, dict[str, Any]]:
    """The error answers for these codes, one per HTTP status (the catalogue's), each naming its codes
    in its description and in `x-error-codes`. An unknown code fails at import."""
    groups: dict[int, dict[str, str | None]] = {}
    for item in codes:
        code, note = (item, None) if isinstance(item, str) else item
        groups.setdefault(CATALOGUE[code].status, {}).setdefault(code, note)
    return {
        status: {
            "description": "\n".join(error_line(code, note) for code, note in entries.items()),
            "content": {"application/json": {"schema": ERROR_BODY}},
            "x-error-codes": list(entries),
        }
        for status, entries in sorted(groups.items())
    }


def answers(
    *codes: ErrorCode,
    status: int = 200,
    description: str = "Successful Response",
    content: dict[str, Any] | None = None,
    also: dict[int, str] | None = None,
) -> dict[str, Any]:
    """`status_code` and `responses` for a route decorator:

        @app.get("/agents/<agentId>", ..., **answers("AGENT_NOT_FOUND", *ACCOUNT_ACCESS, description="The agent"))
        def get_agent(...) -> AgentView:

    The success answer's body is the handler's return annotation (204: none; `content` to say
    otherwise, `also` for other success statuses with the same body), and the errors are the
    codes the route itself can answer. The gate's own (authentication, terms, rate limits, a
    body that is not JSON) and 500 INTERNAL_ERROR are added to the document by shared/openapi.py,
    which knows each route's gate."""
    success: dict[str, Any] = {"description": description}
    if status == 204:
        success["content"] = {}
    elif content is not None:
        success["content"] = content
    documented = {status: success, **{other: {"description": text} for other, text in (also or {}).items()}}
    return {"status_code": status, "responses": {**documented, **error_responses(codes)}}
