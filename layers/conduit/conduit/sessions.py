"""Chat sessions (API.md §7): tokens, lifetimes, site and tool filters."""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from conduit.errors import ConduitError
from conduit.ids import iso, utc_now
from conduit.models import resolve_model
from conduit.repositories.accounts import Account
from conduit.repositories.base import Page
from conduit.repositories.sessions import SessionsRepository
from conduit.repositories.sites import SitesRepository
from conduit.settings import get_settings

TOKEN_PATTERN = re.compile(r"sess_[A-Za-z0-9_-]{32,128}")


def new_session_token() -> str:
    return f"sess_{secrets.token_urlsafe(32)}"  # 43 URL-safe characters, 256 bits


def _expires_at_iso(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def session_view(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "sessionToken": session["sessionToken"],
        "title": session.get("title"),
        "model": session["model"],
        "siteIds": session.get("siteIds"),
        "toolAllowList": session.get("toolAllowList"),
        "toolDenyList": session.get("toolDenyList"),
        "systemPrompt": session.get("systemPrompt"),
        "createdAt": session["createdAt"],
        "expiresAt": _expires_at_iso(int(session["expiresAt"])),
    }


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
    return session_view(session)


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
    return Page(items=[session_view(item) for item in page.items], next_cursor=page.next_cursor)


def message_view(message: dict[str, Any]) -> dict[str, Any]:
    view = {"role": message["role"], "content": message["content"]}
    if message.get("finishReason"):  # assistant messages (API.md §14); older ones have none
        view["finishReason"] = message["finishReason"]
    if message.get("toolCallsJson"):
        view["toolCalls"] = json.loads(message["toolCallsJson"])
    return view


def get_session(token: str, account: Account) -> dict[str, Any]:
    session = find_session(token, account)
    return {**session_view(session), "messages": [message_view(m) for m in SessionsRepository().all_messages(token)]}


def delete_session(token: str, account: Account) -> None:
    find_session(token, account, allow_expired=True)  # cleaning up an expired session is fine
    SessionsRepository().delete(token)
