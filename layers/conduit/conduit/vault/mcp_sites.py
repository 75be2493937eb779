"""Remote MCP servers as vault sites (API.md §12.1): detection, the stored tools, calls.

Detection (order, when a site is added): the URL is looked up as a manifest first (manifests.py:
a URL with a path or query is the manifest itself, a bare origin goes through discovery). Only
when that finds no manifest (MANIFEST_NOT_FOUND: nothing answered 2xx) and the URL has a path or a
query is the same URL probed as a Streamable HTTP endpoint: `server/discover` (2026-07-28), then
`initialize`. A server that answers JSON-RPC, or challenges with 401/403, is an MCP site
(`kind: "mcp"`); anything else keeps the manifest lookup's error. Manifest-first keeps every
manifest site exactly as before (a GET, never a POST to a CMS plugin's route), and an MCP endpoint
answers that GET with 4xx (405/406/400), so it falls through to the probe.

Stored like a manifest site (`toolsJson` with prefixed names and `inputSchema`), plus `kind`,
`mcpProtocolVersion` (the one thing kept between invocations: a modern server needs no probe, a
handshake-era one is initialized directly) and each tool's `annotations` (readOnlyHint,
destructiveHint, idempotentHint, openWorldHint, title) as the server published them.

Calls: `tools/call` in a fresh exchange; `isError: true` → TOOL_EXECUTION_ERROR with the tool's
text; the result given to the model is `structuredContent` when present, else the text of the
content blocks, with images, audio and resources summarised (never dropped silently).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from conduit.platform.errors import ConduitError
from conduit.platform.ids import iso, utc_now
from conduit.vault.manifests import MAX_MANIFEST_BYTES, MAX_TOOLS, _tool, prefixed_names
from conduit.vault.mcp_client import INVALID_PARAMS, METHOD_NOT_FOUND, McpClient, McpFailure
from conduit.net.outbound import GuardedClient

KIND_MCP = "mcp"
KIND_MANIFEST = "manifest"
CALL_SHAPE = "jsonrpc"  # stored callShape of MCP sites (the dispatch key is `kind`)
PROBE_SECONDS = 5.0  # each request while adding or refreshing a site
MAX_TOOLS_JSON = 300 * 1024  # the tools share one DynamoDB item (400 KB) with the rest of the site
MAX_RESULT_BYTES = 1024 * 1024
ANNOTATION_HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
MAX_TEXT = 100_000  # characters of content-block text given to the model


def site_kind(site: dict[str, Any]) -> str:
    """Items stored before MCP sites existed are manifest sites."""
    return site.get("kind") or KIND_MANIFEST


def may_be_endpoint(url: str) -> bool:
    parsed = httpx.URL(url)
    return parsed.path not in ("", "/") or bool(parsed.query)


# --- adding and refreshing ---------------------------------------------------------------------


def _add_error(failure: McpFailure, url: str) -> ConduitError:
    """What adding/refreshing an MCP site says when the server cannot be used."""
    if failure.kind == "refused":
        return ConduitError("INVALID_URL", str(failure))
    if failure.kind == "unavailable":
        return ConduitError("MANIFEST_NOT_FOUND", f"{url}: {failure}")
    if failure.kind == "auth":
        hint = " (it offers OAuth: connect it through /vault/oauth/start)" if "resource_metadata" in failure.challenge else ""
        return ConduitError("MANIFEST_NOT_FOUND", f"{url}: {failure}{hint}")
    return ConduitError("MANIFEST_INVALID", f"The MCP server at {url} cannot be used: {failure}",
                        details=[{"field": "mcp", "message": str(failure)[:300]}])


def probe_client() -> GuardedClient:
    return GuardedClient(timeout=PROBE_SECONDS)


def refreshed_values(site: dict[str, Any], token: str | None) -> dict[str, Any]:
    """tools/list again (POST /vault/sites/{id}/refresh). The stored version is not trusted: the
    server may have moved on, so the negotiation starts over; nothing is stored on failure."""
    url = site["callTarget"]
    mcp = McpClient(url, probe_client(), token=token, max_bytes=MAX_MANIFEST_BYTES, timeout=PROBE_SECONDS)
    try:
        mcp.connect()
    except McpFailure as failure:
        raise _add_error(failure, url) from None
    return site_values(mcp, url, site["siteId"], site["domain"])


def probe(url: str, token: str | None, client: GuardedClient) -> McpClient | None:
    """A connected client when `url` answers as an MCP endpoint; None when it does not look like one.
    Errors of a server that is clearly MCP (a JSON-RPC answer, an auth challenge) are raised."""
    mcp = McpClient(url, client, token=token, max_bytes=MAX_MANIFEST_BYTES, timeout=PROBE_SECONDS)
    try:
        mcp.connect()
    except McpFailure as failure:
        if failure.kind == "not_mcp":
            return None  # keep the manifest lookup's answer
        raise _add_error(failure, url) from None  # an MCP server that cannot be used, or a refused address
    return mcp


def site_values(mcp: McpClient, url: str, site_id: str, domain: str) -> dict[str, Any]:
    """The stored attributes of an MCP site: its identity and its tools (every page of tools/list)."""
    try:
        with mcp:
            raw_tools = mcp.list_tools(MAX_TOOLS)
    except McpFailure as failure:
        raise _add_error(failure, url) from None
    tools, warnings = _tools(raw_tools[:MAX_TOOLS])
    if len(raw_tools) > MAX_TOOLS:
        warnings.append({"tool": "*", "message": f"only the first {MAX_TOOLS} tools are kept"})
    if not tools:
        details = [{"field": f"tools.{w['tool']}", "message": w["message"]} for w in warnings] or [
            {"field": "tools", "message": "the server lists no tools"}
        ]
        raise ConduitError("MANIFEST_INVALID", f"The MCP server at {url} offers no usable tool", details=details)
    names = prefixed_names(domain, site_id, [tool["name"] for tool in tools])
    for tool in tools:
        tool["prefixedName"] = names[tool["name"]]
    tools_json = json.dumps(tools, separators=(",", ":"))
    if len(tools_json) > MAX_TOOLS_JSON:
        raise ConduitError("MANIFEST_INVALID", f"The MCP server at {url} lists more tool data than a site can hold",
                           details=[{"field": "tools", "message": f"more than {MAX_TOOLS_JSON} bytes"}])
    server = mcp.server
    name = server.get("title") or server.get("name") or domain
    return {
        "kind": KIND_MCP,
        "manifestUrl": url,
        "name": name[:200],
        "version": (server.get("version") or mcp.protocol_version or "")[:64] or "unknown",
        "description": (server.get("instructions") or "")[:4000],
        "mcpProtocolVersion": mcp.protocol_version,
        "callShape": CALL_SHAPE,
        "callTarget": url,
        "warnings": warnings,
        "toolsJson": tools_json,
        "manifestFetchedAt": iso(utc_now()),
    }


def _annotations(raw: dict[str, Any]) -> dict[str, Any]:
    annotations = raw.get("annotations") if isinstance(raw.get("annotations"), dict) else {}
    kept: dict[str, Any] = {k: annotations[k] for k in ANNOTATION_HINTS if isinstance(annotations.get(k), bool)}
    title = raw.get("title") or annotations.get("title")
    if isinstance(title, str) and title:
        kept["title"] = title[:200]
    return kept


def _tools(raw_tools: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """MCP tools checked with the manifest rules (schema meta-validation, depth, local refs)."""
    tools: list[dict[str, Any]] = []
    warnings: list[dict[str, str]] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_tools):
        tool, problems = _tool(raw, f"tools.{index}")
        label = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else f"#{index}"
        if tool is None:
            warnings.append({"tool": label[:128], "message": "; ".join(p["message"] for p in problems)[:500]})
            continue
        if tool.name in seen:
            warnings.append({"tool": tool.name, "message": "listed twice; the first is kept"})
            continue
        seen.add(tool.name)
        entry: dict[str, Any] = {"name": tool.name, "description": tool.description, "inputSchema": tool.input_schema}
        annotations = _annotations(raw)
        if annotations:
            entry["annotations"] = annotations
        tools.append(entry)
    return tools, warnings


# --- calls -------------------------------------------------------------------------------------


def call(site: dict[str, Any], tool_name: str, arguments: dict[str, Any], token: str | None, client: GuardedClient) -> Any:
    """One tools/call; the value given to the model, or a ConduitError."""
    mcp = McpClient(site["callTarget"], client, token=token, protocol_version=site.get("mcpProtocolVersion"),
                    max_bytes=MAX_RESULT_BYTES)
    try:
        with mcp:
            result = mcp.call_tool(tool_name, arguments)
    except McpFailure as failure:
        raise call_error(failure, site, tool_name) from None
    return tool_result(result, site, tool_name)


class AuthRejected(Exception):
    """The server refused the token (401/403): the caller may refresh it and try once more."""


def call_error(failure: McpFailure, site: dict[str, Any], tool_name: str) -> Exception:
    domain = site["domain"]
    if failure.kind == "auth":
        return AuthRejected(str(failure))
    if failure.kind in ("refused", "unavailable"):
        return ConduitError("SITE_UNAVAILABLE", f"{domain} could not be reached: {failure}")
    if failure.kind == "rpc":
        reason = {METHOD_NOT_FOUND: "the server does not know the method", INVALID_PARAMS: "the server refused the arguments"}.get(
            failure.rpc_code or 0, "the server reported an error"
        )
        return ConduitError("TOOL_EXECUTION_ERROR", f"{tool_name} on {domain} failed: {reason}: {failure}",
                            details=[{"field": "jsonrpc", "message": f"code {failure.rpc_code}"}])
    return ConduitError("TOOL_EXECUTION_ERROR", f"{tool_name} on {domain} failed: {failure}")


def tool_result(result: dict[str, Any], site: dict[str, Any], tool_name: str) -> Any:
    """structuredContent when present, else the content blocks' text; isError → TOOL_EXECUTION_ERROR."""
    result_type = result.get("resultType", "complete")
    if result_type != "complete":
        raise ConduitError("TOOL_EXECUTION_ERROR", f"{tool_name} on {site['domain']} asked for input Conduit cannot give ({str(result_type)[:40]})")
    text = content_text(result.get("content"))
    if result.get("isError") is True:
        raise ConduitError("TOOL_EXECUTION_ERROR", f"{tool_name} on {site['domain']} reported an error: {text[:2000] or 'no details'}")
    structured = result.get("structuredContent")
    if isinstance(structured, dict):
        return structured
    return {"content": text}


def content_text(blocks: Any) -> str:
    """The text of MCP content blocks; other blocks are named with what they hold, never dropped."""
    if not isinstance(blocks, list):
        return ""
    parts: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif kind in ("image", "audio"):
            data = block.get("data") if isinstance(block.get("data"), str) else ""
            parts.append(f"[{kind}: {str(block.get('mimeType') or 'unknown type')[:80]}, about {len(data) * 3 // 4} bytes, not shown]")
        elif kind == "resource" and isinstance(block.get("resource"), dict):
            resource = block["resource"]
            if isinstance(resource.get("text"), str):
                parts.append(f"[resource {str(resource.get('uri'))[:300]}]\n{resource['text']}")
            else:
                parts.append(f"[resource {str(resource.get('uri'))[:300]} ({str(resource.get('mimeType') or 'binary')[:80]}), not shown]")
        elif kind == "resource_link":
            parts.append(f"[resource link {str(block.get('uri'))[:300]}: {str(block.get('name') or '')[:200]}]")
        else:
            parts.append(f"[{str(kind)[:40]} content, not shown]")
    text = "\n".join(parts)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…(truncated)"
