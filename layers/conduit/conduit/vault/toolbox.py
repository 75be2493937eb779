"""The tools a model may call: a chat session's or an agent's sites' tools by published name,
filtered by the session's allow and deny lists; and the model loop's bounds, the same in chat and
agent runs. Light on purpose: only calling a tool loads the site-call stack (conduit.vault.tool_calls).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from conduit.platform.errors import ConduitError
from conduit.models import ToolSpec
from conduit.repositories.accounts import Account
from conduit.repositories.sites import SitesRepository

HISTORY_MESSAGES = 20  # the model sees at most this many messages of the conversation
DEFAULT_MAX_ROUNDS = 5  # model turns of one exchange, and of a run unless its agent says otherwise


@dataclass(frozen=True, slots=True)
class AvailableTool:
    site: dict[str, Any]
    spec: ToolSpec


def available_tools(account: Account, session: dict[str, Any]) -> dict[str, AvailableTool]:
    """The tools the model may call, by published name: the session's sites (all of the account's
    when it names none), minus expired sites, filtered by the allow and deny lists."""
    sites = SitesRepository()
    site_ids = session.get("siteIds")
    if site_ids:
        chosen = []
        for site_id in site_ids:
            try:
                chosen.append(sites.get_site(account.account_id, site_id))
            except ConduitError:
                continue  # a site deleted since the session was made: its tools are gone
    else:
        chosen = sites.all_sites(account.account_id)
    tools: dict[str, AvailableTool] = {}
    for site in chosen:
        if site["status"] != "active":
            continue  # one broken site never breaks the others
        for tool in json.loads(site["toolsJson"]):
            name = tool["prefixedName"]
            if name not in tools and tool_allowed(name, session.get("toolAllowList"), session.get("toolDenyList")):
                tools[name] = AvailableTool(site, ToolSpec(name, tool["description"], tool["inputSchema"]))
    return tools


def tool_allowed(name: str, allow: list[str] | None, deny: list[str] | None) -> bool:
    """Exact names or a trailing `*` prefix; deny wins; no allow list means everything is allowed."""

    def matches(patterns: list[str]) -> bool:
        return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns)

    if deny and matches(deny):
        return False
    return not allow or matches(allow)
