"""Chat sessions (API.md §7): tokens, lifetimes, site and tool filters."""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import Field

from conduit.platform.errors import ConduitError
from conduit.platform.ids import iso, utc_now
from conduit.models import resolve_model
from conduit.repositories.accounts import Account
from conduit.repositories.base import Page
from conduit.repositories.sessions import SessionsRepository
from conduit.repositories.sites import SitesRepository
from conduit.platform.settings import get_settings
from conduit.platform.views import Omitted, View

TOKEN_PATTERN = re.compile(r"sess_[A-Za-z0-9_-]{32,128}")
# Why an answer ended (API.md §14): the provider's reason, or max_rounds when the tool rounds ran out.
FinishReason = Literal["stop", "length", "refusal", "max_rounds"]


def new_session_token() -> str:
    return f"sess_{secrets.token_urlsafe(32)}"  # 43 URL-safe characters, 256 bits


def _expires_at_iso(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


class SessionView(View):
    """A chat session (API.md §7)."""

    sessionToken: str = Field(description="`sess_` and at least 32 URL-safe characters: what POST /chat takes")
    title: str | None
    model: str = Field(description="`provider:model`, used unless a message names another")
    siteIds: list[str] | None = Field(
        description="The sites whose tools the model sees; null: every site of the account"
    )
    toolAllowList: list[str] | None = Field(
        description="Prefixed tool names, or prefixes ending in `*`; null: every tool"
    )
    toolDenyList: list[str] | None = Field(description="As toolAllowList; deny wins")
    systemPrompt: str | None = Field(description="Sent as the provider's system prompt")
    createdAt: str
    expiresAt: str = Field(description="After it, the session answers 410 SESSION_EXPIRED")

    @classmethod
    def of(cls, session: dict[str, Any], **more: Any) -> Self:
        return cls(
            sessionToken=session["sessionToken"],
            title=session.get("title"),
            model=session["model"],
            siteIds=session.get("siteIds"),
            toolAllowList=session.get("toolAllowList"),
            toolDenyList=session.get("toolDenyList"),
            systemPrompt=session.get("systemPrompt"),
            createdAt=session["createdAt"],
            expiresAt=_expires_at_iso(int(session["expiresAt"])),
            **more,
        )


class ToolCallRecord(View):
    """A tool call of a chat exchange, as the answer and the session's history list it."""

    tool: str = Field(description="The prefixed tool name the model called")
    siteId: str | None = Field(description="null: the model named a tool that does not exist (nothing was called)")
    arguments: dict[str, Any]
    status: Literal["ok", "error"] = Field(
        description="error: an unknown tool or arguments failing its schema, answered to the model (not charged)"
    )
    durationMs: int


class MessageView(View):
    role: Literal["user", "assistant"]
    content: str
    finishReason: Annotated[FinishReason | None, Omitted] = Field(
        None,
        description="Assistant messages: why the answer ended (API.md §14); absent on messages saved before it existed",
    )
    toolCalls: Annotated[list[ToolCallRecord] | None, Omitted] = Field(
        None, description="Assistant messages: the tool calls made for this answer, when there were any"
    )

    @classmethod
    def of(cls, message: dict[str, Any]) -> Self:
        return cls(
            role=message["role"],
            content=message["content"],
            finishReason=message.get("finishReason") or None,
            toolCalls=json.loads(message["toolCallsJson"]) if message.get("toolCallsJson") else None,
        )


class SessionWithMessages(SessionView):
    messages: list[MessageView] = Field(description="The conversation, oldest first")


def create_session(
    account: Account,
    *,
    title: str | None,
    model: str | None,
    site_ids: list[str] | None,
    allow: list[str] | None,
    deny: list[str] | None,
    ttl_seconds: int,
    system_prompt: str | None = None,
) -> dict[str, Any]:
    model = model or get_settings().default_model
    resolve_model(model)  # an unknown provider is refused now, not at the first message
    sites = SitesRepository()
    for site_id in site_ids or []:
        sites.get_site(account.account_id, site_id)  # another account's site is NOT_FOUND
    session = {
        "sessionToken": new_session_token(),
        "accountId": account.account_id,
        "title": title,
        "model": model,
        "siteIds": site_ids,
        "toolAllowList": allow,
        "toolDenyList": deny,
        "systemPrompt": system_prompt,
        "createdAt": iso(utc_now()),
        "expiresAt": int(time.time()) + ttl_seconds,
    }
    SessionsRepository().create(session)
    return SessionView.of(session).body()


def find_session(token: str, account: Account, *, allow_expired: bool = False) -> dict[str, Any]:
    """The caller's session: INVALID_SESSION (malformed), SESSION_NOT_FOUND (unknown or someone
    else's), SESSION_EXPIRED (past expiresAt, until TTL purges it)."""
    _check_token(token)
    return _checked(SessionsRepository().find(token), account, allow_expired)


def find_session_with_history(token: str, account: Account, count: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`find_session`, with the session's last `count` messages (oldest first), in one request."""
    _check_token(token)
    session, recent = SessionsRepository().find_with_recent(token, count)
    return _checked(session, account, False), recent


def _check_token(token: str) -> None:
    if not TOKEN_PATTERN.fullmatch(token):
        raise ConduitError("INVALID_SESSION", "Session tokens look like sess_ followed by 32 or more URL-safe characters")


def _checked(session: dict[str, Any] | None, account: Account, allow_expired: bool) -> dict[str, Any]:
    if session is None or session["accountId"] != account.account_id:
        raise ConduitError("SESSION_NOT_FOUND")
    if not allow_expired and int(session["expiresAt"]) <= time.time():
        raise ConduitError("SESSION_EXPIRED")
    return session


def list_sessions(account: Account, limit: int, cursor: str | None) -> Page:
    page = SessionsRepository().list_for_account(account.account_id, limit, cursor)
    return Page(items=[SessionView.of(item).body() for item in page.items], next_cursor=page.next_cursor)


def get_session(token: str, account: Account) -> dict[str, Any]:
    session = find_session(token, account)
    messages = [MessageView.of(message) for message in SessionsRepository().all_messages(token)]
    return SessionWithMessages.of(session, messages=messages).body()


def delete_session(token: str, account: Account) -> None:
    find_session(token, account, allow_expired=True)  # cleaning up an expired session is fine
    SessionsRepository().delete(token)
