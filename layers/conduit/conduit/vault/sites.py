"""The vault (API.md §6): sites, their manifests and their encrypted tokens."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Self

import httpx
from pydantic import Field

from conduit.vault import mcp_sites

from conduit.vault import token_box
from conduit.platform.errors import ConduitError
from conduit.platform.ids import iso, new_id, utc_now
from conduit.vault.manifests import FETCH_SECONDS, Manifest, fetch_manifest, oauth_client_id, prefixed_names
from conduit.net.outbound import GuardedClient, OutboundRefused, OutboundUnavailable
from conduit.repositories.accounts import Account
from conduit.repositories.base import Page
from conduit.repositories.sites import SitesRepository
from conduit.platform.tiers import get_tiers
from conduit.platform.views import Omitted, View

def outbound_client() -> GuardedClient:
    # Discovery bounds its candidates' total time itself (manifests.DISCOVERY_SECONDS).
    return GuardedClient(timeout=FETCH_SECONDS)


def normalize_token(token: str | None) -> str | None:
    """Tokens are accepted with or without a leading `Bearer `."""
    if token is None:
        return None
    token = token.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return token or None


def site_domain(url: str) -> str:
    parsed = httpx.URL(url)
    host = parsed.host.lower()
    return f"{host}:{parsed.port}" if parsed.port else host


def check_site_url(url: str, client: GuardedClient) -> None:
    """An absolute https:// URL (http:// on loopback in local mode: outbound.is_loopback_host) on an
    allowed address, else INVALID_URL."""
    try:
        client.check_url(url)
    except OutboundRefused as refused:
        raise ConduitError("INVALID_URL", str(refused)) from None
    except OutboundUnavailable as unavailable:
        raise ConduitError("MANIFEST_NOT_FOUND", str(unavailable)) from None


def _manifest_values(
    manifest: Manifest, manifest_url: str, site_id: str, domain: str, client_id: str | None = None
) -> dict[str, Any]:
    names = prefixed_names(domain, site_id, [tool.name for tool in manifest.tools])
    tools = [
        {"name": tool.name, "prefixedName": names[tool.name], "description": tool.description, "inputSchema": tool.input_schema}
        for tool in manifest.tools
    ]
    return {
        "manifestUrl": manifest_url,
        "name": manifest.name,
        "version": manifest.version,
        "description": manifest.description or "",
        "authType": manifest.auth_type,
        "callShape": manifest.call_shape,
        "callTarget": manifest.call_target,
        "authorizationUrl": manifest.authorization_url or "",
        "tokenUrl": manifest.token_url or "",
        "scopes": manifest.scopes,
        # The client id the site's tokens were issued to (refreshes must present the same one).
        "clientId": client_id or oauth_client_id(manifest) or "",
        "warnings": list(manifest.warnings),
        # JSON, not a DynamoDB map: JSON Schemas hold floats, which the DynamoDB serializer refuses.
        "toolsJson": json.dumps(tools, separators=(",", ":")),
        "manifestFetchedAt": iso(utc_now()),
    }


class ToolAnnotations(View):
    """An MCP tool's annotations as its server published them (hints, not guarantees)."""

    title: Annotated[str | None, Omitted] = None
    readOnlyHint: Annotated[bool | None, Omitted] = None
    destructiveHint: Annotated[bool | None, Omitted] = None
    idempotentHint: Annotated[bool | None, Omitted] = None
    openWorldHint: Annotated[bool | None, Omitted] = None


class SiteTool(View):
    name: str = Field(description="The tool's name at the site (what the site receives)")
    prefixedName: str = Field(
        description="The name models see: `<domain>_<tool>`, [A-Za-z0-9_-], at most 64 characters"
    )
    description: str
    inputSchema: dict[str, Any] = Field(description="JSON Schema of the arguments")
    annotations: Annotated[ToolAnnotations | None, Omitted] = Field(
        None, description="MCP sites: the tool's annotations, when its server published any"
    )


class SiteWarning(View):
    tool: str = Field(
        description="The tool left out (its name, `#<index>` when it has none, `*` for tools past the limit)"
    )
    message: str = Field(description="Why it was left out")


class Site(View):
    """A site in the vault: never its token, only whether there is one."""

    id: str
    url: str
    domain: str = Field(description="The URL's host, lower-cased, with `:port` when not the scheme's default")
    name: str
    version: str
    description: str | None
    authType: Literal["bearer", "oauth2", "none"]
    hasToken: bool
    status: Literal["active", "expired"] = Field(
        description="expired: its token can no longer be refreshed; its tools are left out until a new token is set"
    )
    createdAt: str
    manifestFetchedAt: str
    lastUsedAt: str | None
    warnings: list[SiteWarning] = Field(
        description="Tools of the manifest that are left out (invalid even by the tolerant reading of API.md §11), and why"
    )
    kind: Literal["manifest", "mcp"] = Field(
        description="`mcp`: a remote MCP server (Streamable HTTP endpoint, API.md §12.1); `manifest`: a manifest site"
    )
    tools: Annotated[list[SiteTool] | None, Omitted] = Field(
        None, description="The usable tools (a single site; not in lists)"
    )

    @classmethod
    def of(cls, site: dict[str, Any], *, with_tools: bool = True) -> Self:
        return cls(
            id=site["siteId"],
            url=site["url"],
            domain=site["domain"],
            name=site["name"],
            version=site["version"],
            description=site.get("description") or None,
            authType=site["authType"],
            hasToken="accessToken" in site,
            status=site["status"],
            createdAt=site["createdAt"],
            manifestFetchedAt=site["manifestFetchedAt"],
            lastUsedAt=site.get("lastUsedAt"),
            warnings=site.get("warnings") or [],  # tools of the manifest left out, and why (§11)
            kind=mcp_sites.site_kind(site),  # "mcp" | "manifest" (§12.1)
            tools=json.loads(site["toolsJson"]) if with_tools else None,
        )


def _sealed_tokens(account_id: str, site_id: str, token: str | None, refresh_token: str | None) -> dict[str, str]:
    sealed = {}
    if token:
        sealed["accessToken"] = token_box.seal(token, account_id=account_id, site_id=site_id, purpose="access")
    if refresh_token:
        sealed["refreshToken"] = token_box.seal(refresh_token, account_id=account_id, site_id=site_id, purpose="refresh")
    return sealed


def add_site(
    account: Account,
    url: str,
    token: str | None,
    refresh_token: str | None,
    token_expires_at: int | None = None,
    client_id: str | None = None,
    oauth: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Fetch and validate the manifest, then store the site with its tokens encrypted. Nothing is
    stored unless every step succeeds."""
    client = outbound_client()
    check_site_url(url, client)
    token, refresh_token = normalize_token(token), normalize_token(refresh_token)
    site_id, domain, now = new_id("site"), site_domain(url), iso(utc_now())
    mcp = None
    try:
        manifest, manifest_url = fetch_manifest(url, token, client)
    except ConduitError as not_found:
        # No manifest there: the URL may be an MCP endpoint (mcp_sites: the detection order).
        if not_found.code != "MANIFEST_NOT_FOUND" or not mcp_sites.may_be_endpoint(url):
            raise
        mcp = mcp_sites.probe(url, token, mcp_sites.probe_client())
        if mcp is None:
            raise
    if mcp is not None:
        values = {**mcp_sites.site_values(mcp, url, site_id, domain), "authType": "bearer" if token else "none"}
        if oauth:  # connected through /vault/oauth (mcp_oauth): what refreshing needs
            values.update(oauth, authType="oauth2", clientId=client_id or "")
    else:
        values = _manifest_values(manifest, manifest_url, site_id, domain, client_id)
    site = {
        "siteId": site_id,
        "accountId": account.account_id,
        "url": url,
        "domain": domain,
        "status": "active",
        "createdAt": now,
        **values,
        **_sealed_tokens(account.account_id, site_id, token, refresh_token),
    }
    if token_expires_at is not None:
        site["tokenExpiresAt"] = token_expires_at
    SitesRepository().create(site, get_tiers().tier(account.tier).max_sites)
    return Site.of(site).body()


def list_sites(account: Account, limit: int, cursor: str | None) -> Page:
    page = SitesRepository().list_sites(account.account_id, limit, cursor)
    return Page(items=[Site.of(site, with_tools=False).body() for site in page.items], next_cursor=page.next_cursor)


def get_site(account: Account, site_id: str) -> dict[str, Any]:
    return Site.of(SitesRepository().get_site(account.account_id, site_id)).body()


def replace_token(account: Account, site_id: str, token: str) -> dict[str, Any]:
    normalized = normalize_token(token)
    if normalized is None:
        raise ConduitError("VALIDATION_ERROR", "The token is empty", details=[{"field": "token", "message": "must not be empty"}])
    sealed = _sealed_tokens(account.account_id, site_id, normalized, None)
    # A replaced token makes an expired site usable again; its old expiry no longer applies.
    site = SitesRepository().update(account.account_id, site_id, {**sealed, "status": "active"}, remove=("tokenExpiresAt",))
    return Site.of(site).body()


def delete_site(account: Account, site_id: str) -> None:
    SitesRepository().delete(account.account_id, site_id)


def refresh_manifest(account: Account, site_id: str) -> dict[str, Any]:
    """Re-fetch the manifest. On any failure the stored manifest stays in use and the error is returned."""
    sites = SitesRepository()
    site = sites.get_site(account.account_id, site_id)
    token = site_token(site)
    if mcp_sites.site_kind(site) == mcp_sites.KIND_MCP:
        values = mcp_sites.refreshed_values(site, token)
        return Site.of(sites.update(account.account_id, site_id, values)).body()
    client = outbound_client()
    manifest, manifest_url = fetch_manifest(site["manifestUrl"], token, client)
    values = _manifest_values(manifest, manifest_url, site_id, site["domain"], site.get("clientId") or None)
    updated = sites.update(account.account_id, site_id, values)
    return Site.of(updated).body()


def site_token(site: dict[str, Any]) -> str | None:
    """The site's access token, decrypted for one call. Never log or return it."""
    if "accessToken" not in site:
        return None
    return token_box.unseal(site["accessToken"], account_id=site["accountId"], site_id=site["siteId"], purpose="access")
