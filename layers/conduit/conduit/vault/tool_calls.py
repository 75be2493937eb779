"""Calling a site's tool (used by chat, agent runs and /mcp).

`run_site_tool` is the one path of a paid tool call: the outgoing per-domain
limit, then the credit charge, then `call_tool`.

Arguments are checked against the tool's input_schema before anything is
sent; the site receives the original tool name in its own call shape, with
the token decrypted for this call only (refreshed first when it is about to
expire, and once more after a 401/403). Outcomes: the JSON result, or
TOOL_EXECUTION_ERROR (non-2xx, non-JSON, oversized) or SITE_UNAVAILABLE
(unreachable: DNS, refused, timeout, or an address that is no longer allowed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from conduit.vault import mcp_sites
from conduit.platform.errors import ConduitError
from conduit.platform.ids import iso, utc_now
from conduit.vault.manifests import LEGACY_CALL_SHAPES, TOOL_NAME_PLACEHOLDER
from conduit.net.outbound import GuardedClient, OutboundError, OutboundRefused, OutboundResponse, OutboundUnavailable
from conduit.identity.rate_limit import count_outgoing_call
from conduit.repositories.sites import SitesRepository
from conduit.vault.site_oauth import can_refresh, refresh, token_for_call
from conduit.platform.tiers import get_tiers

MAX_RESULT_BYTES = 1024 * 1024
TOOL_TIMEOUT_SECONDS = 30.0
def find_tool(site: dict[str, Any], name: str) -> dict[str, Any]:
    """A tool of the site by original or prefixed name."""
    for candidate in json.loads(site["toolsJson"]):
        if name in (candidate["name"], candidate["prefixedName"]):
            return candidate
    raise ConduitError("VALIDATION_ERROR", f"The site has no tool named {name!r}", details=[{"field": "tool", "message": "unknown tool"}])


def check_arguments(tool: dict[str, Any], arguments: Any) -> None:
    from conduit.platform.json_schemas import instance_problems  # jsonschema only when a tool is called (~40 ms of import)

    problems = instance_problems(tool["inputSchema"], arguments, limit=50)
    if problems:
        details = [{"field": f"arguments.{path}" if path else "arguments", "message": message} for path, message in problems]
        raise ConduitError("VALIDATION_ERROR", f"Arguments of {tool['name']} do not match its schema", details=details)


def _note_use(site: dict[str, Any]) -> None:
    """Bookkeeping after a call never replaces its outcome: a site deleted while its tool ran has
    nothing left to note (the call happened; its result or error stands)."""
    try:
        SitesRepository().update(site["accountId"], site["siteId"], {"lastUsedAt": iso(utc_now())})
    except ConduitError as error:
        if error.code != "NOT_FOUND":
            raise


def call_request(site: dict[str, Any], tool_name: str, arguments: dict[str, Any]) -> tuple[str, Any]:
    """URL and body of a call, by the call shape stored with the site (manifests.py, §11)."""
    shape, target = site["callShape"], site["callTarget"]
    shape = LEGACY_CALL_SHAPES.get(shape, shape)
    if shape == "rest":
        return f"{target.rstrip('/')}/tools/{quote(tool_name, safe='')}", arguments
    if shape == "template":
        return target.replace(TOOL_NAME_PLACEHOLDER, quote(tool_name, safe="")), arguments
    return target, {"name": tool_name, "arguments": arguments}  # "named"


def call_tool(
    site: dict[str, Any], name: str, arguments: dict[str, Any], *, client: GuardedClient | None = None
) -> Any:
    tool = find_tool(site, name)
    check_arguments(tool, arguments)
    client = client or GuardedClient(timeout=TOOL_TIMEOUT_SECONDS)
    if mcp_sites.site_kind(site) == mcp_sites.KIND_MCP:
        return _call_mcp(site, tool["name"], arguments, client)
    url, body = call_request(site, tool["name"], arguments)

    def send(token: str | None) -> OutboundResponse:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return client.request("POST", url, headers=headers, json=body, max_bytes=MAX_RESULT_BYTES)
        except (OutboundUnavailable, OutboundRefused) as unreachable:
            raise ConduitError("SITE_UNAVAILABLE", f"{site['domain']} could not be reached: {unreachable}") from None
        except OutboundError as failure:  # too large, redirect loop
            raise ConduitError("TOOL_EXECUTION_ERROR", f"{tool['name']} on {site['domain']} failed: {failure}") from None

    try:
        uses_token = site.get("authType") != "none"  # auth.type "none": the site takes no token
        response = send(token_for_call(site) if uses_token else None)
        if uses_token and response.status in (401, 403) and can_refresh(site):
            # The site rejected the token: refresh once, then retry once.
            response = send(refresh(site))
    finally:
        _note_use(site)
    if not 200 <= response.status < 300:
        raise ConduitError("TOOL_EXECUTION_ERROR", f"{tool['name']} on {site['domain']} answered HTTP {response.status}")
    try:
        return response.json()
    except ValueError:
        raise ConduitError("TOOL_EXECUTION_ERROR", f"{tool['name']} on {site['domain']} did not answer with JSON") from None


def _call_mcp(site: dict[str, Any], tool_name: str, arguments: dict[str, Any], client: GuardedClient) -> Any:
    """tools/call on an MCP site (mcp_sites), with the same token handling as other sites."""
    token = token_for_call(site) if "accessToken" in site else None
    try:
        try:
            return mcp_sites.call(site, tool_name, arguments, token, client)
        except mcp_sites.AuthRejected as rejected:
            if not (token and can_refresh(site)):
                raise ConduitError("TOOL_EXECUTION_ERROR", f"{tool_name} on {site['domain']} failed: {rejected}") from None
        try:
            return mcp_sites.call(site, tool_name, arguments, refresh(site), client)  # refreshed once, retried once
        except mcp_sites.AuthRejected as rejected:
            raise ConduitError("TOOL_EXECUTION_ERROR", f"{tool_name} on {site['domain']} failed: {rejected}") from None
    finally:
        SitesRepository().update(site["accountId"], site["siteId"], {"lastUsedAt": iso(utc_now())})


def run_site_tool(
    account_id: str,
    site: dict[str, Any],
    name: str,
    arguments: dict[str, Any],
    *,
    charge: Callable[[int], None],
    remaining: Callable[[], float],
) -> Any:
    """One paid tool call, the same from chat, agent runs and /mcp: OUTGOING_RATE_LIMITED at the
    per-domain limit (nothing charged), then `charge(cost of a tool call)`, then the call, bounded by
    `remaining()` seconds (asked after the charge) and the 30 s cap. Arguments failing the tool's
    schema never reach the site, so they are refused (VALIDATION_ERROR) before being counted or charged."""
    check_arguments(find_tool(site, name), arguments)
    count_outgoing_call(account_id, site["domain"])
    charge(get_tiers().costs.tool_call)
    client = GuardedClient(timeout=min(remaining(), TOOL_TIMEOUT_SECONDS))
    return call_tool(site, name, arguments, client=client)
