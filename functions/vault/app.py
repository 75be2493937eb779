"""/vault/sites: connect sites, read their tools, replace tokens, refresh manifests (API.md §6)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, Field, StringConstraints

from conduit import site_oauth, vault
from conduit.access import account_for
from conduit.api import handler_for, make_resolver
from conduit.auth import prefetch
from conduit.repositories.sites import prefetch_site
from conduit.routes import Cursor, CurrentCaller, Limit, StrictBody, WorkspaceId, page_body

app = make_resolver()
Token = Field(None, min_length=1, max_length=8192)


class NewSite(StrictBody):
    url: str = Field(min_length=1, max_length=2048)
    token: str | None = Token
    refreshToken: str | None = Token
    workspaceId: str | None = Field(None, min_length=1, max_length=64)


# RFC 6749 §3.3 scope-token characters.
ScopeToken = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+$")]


class OAuthStart(StrictBody):
    url: str = Field(min_length=1, max_length=2048)
    workspaceId: str | None = Field(None, min_length=1, max_length=64)
    # Where the site sends the user back with the code: an https URL or urn:ietf:wg:oauth:2.0:oob
    # (the site shows the code). Default: the out-of-band URN when the manifest lists it.
    redirectUri: str | None = Field(None, min_length=1, max_length=2048)
    # Scopes to ask for; default the least, `read` (API.md §11).
    scopes: list[ScopeToken] | None = Field(None, min_length=1, max_length=20)


class OAuthComplete(StrictBody):
    state: str = Field(min_length=1, max_length=256)
    code: str = Field(min_length=1, max_length=4096)
    workspaceId: str | None = Field(None, min_length=1, max_length=64)


class TokenChange(StrictBody):
    token: str = Field(min_length=1, max_length=8192)


# --- response shapes (documentation: handlers return plain dicts built by conduit.vault) ---


class SiteTool(BaseModel):
    name: str = Field(description="The tool's name at the site (what the site receives)")
    prefixedName: str = Field(description="The name models see: `<domain>_<tool>`, [A-Za-z0-9_-], at most 64 characters")
    description: str
    inputSchema: dict[str, Any] = Field(description="JSON Schema of the arguments")
    annotations: dict[str, Any] | None = Field(
        None,
        description="MCP sites: the tool's annotations as the server published them "
        "(readOnlyHint, destructiveHint, idempotentHint, openWorldHint, title)",
    )


class SiteWarning(BaseModel):
    tool: str = Field(description='The tool left out (its name, `#<index>` when it has none, `*` for tools past the limit)')
    message: str = Field(description="Why it was left out")


class Site(BaseModel):
    id: str
    url: str
    domain: str
    name: str
    version: str
    description: str | None
    authType: Literal["bearer", "oauth2", "none"]
    hasToken: bool
    status: Literal["active", "expired"]
    createdAt: str
    manifestFetchedAt: str
    lastUsedAt: str | None
    warnings: list[SiteWarning] = Field(
        description="Tools of the manifest that are left out (invalid even by the tolerant reading of API.md §11), and why"
    )
    tools: list[SiteTool] | None = Field(None, description="The usable tools (not in lists)")
    kind: Literal["manifest", "mcp"] = Field(
        "manifest", description="`mcp`: a remote MCP server (Streamable HTTP endpoint, API.md §12.1); `manifest`: a manifest site"
    )


class SitePage(BaseModel):
    items: list[Site]
    nextCursor: str | None


class OAuthStarted(BaseModel):
    authorizationUrl: str = Field(description="Where to send the person to approve")
    state: str
    redirectUri: str | None = Field(
        description="The redirect URI sent to the site; urn:ietf:wg:oauth:2.0:oob means the site shows the code, "
        "which the person pastes into /vault/oauth/complete"
    )
    scopes: list[str] = Field(description="The scopes asked for (by default the least: read)")


def _returns(model: type[BaseModel], status: int = 200, description: str = "Successful Response") -> dict:
    return {"responses": {status: {"description": description, "content": {"application/json": {"model": model}}}}}


@app.post(
    "/vault/sites",
    tags=["Vault"],
    summary="Connect a site: fetch and validate its manifest, store its token",
    status_code=201,
    **_returns(Site, 201, "The site"),
)
def add_site(site: NewSite, caller: CurrentCaller) -> dict:
    return vault.add_site(account_for(caller, site.workspaceId, "write"), site.url, site.token, site.refreshToken)


@app.get("/vault/sites", tags=["Vault"], summary="The account's sites (tokens are never returned)", **_returns(SitePage))
def list_sites(
    caller: CurrentCaller,
    workspace_id: WorkspaceId = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> dict:
    return page_body(vault.list_sites(account_for(caller, workspace_id, "read"), limit, cursor))


@app.get("/vault/sites/<siteId>", tags=["Vault"], summary="A site with its tools", **_returns(Site))
@prefetch(prefetch_site)
def get_site(siteId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> dict:  # noqa: N803
    return vault.get_site(account_for(caller, workspace_id, "read"), siteId)


@app.patch("/vault/sites/<siteId>", tags=["Vault"], summary="Replace the stored token", **_returns(Site))
@prefetch(prefetch_site)
def replace_token(siteId: str, change: TokenChange, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> dict:  # noqa: N803
    return vault.replace_token(account_for(caller, workspace_id, "write"), siteId, change.token)


@app.delete("/vault/sites/<siteId>", tags=["Vault"], summary="Remove a site", status_code=204)
@prefetch(prefetch_site)
def delete_site(siteId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None):  # noqa: N803
    vault.delete_site(account_for(caller, workspace_id, "write"), siteId)
    return Response(status_code=204)


@app.post(
    "/vault/sites/<siteId>/refresh", tags=["Vault"], summary="Re-fetch the manifest (the old one stays on failure)", **_returns(Site)
)
def refresh_site(siteId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> dict:  # noqa: N803
    return vault.refresh_manifest(account_for(caller, workspace_id, "write"), siteId)


@app.post("/vault/oauth/start", tags=["Vault"], summary="Start OAuth2 (PKCE S256) for an oauth2 site or an MCP server (RFC 9728, 8414, 7591, 8707)", **_returns(OAuthStarted))
def oauth_start(request: OAuthStart, caller: CurrentCaller) -> dict:
    account = account_for(caller, request.workspaceId, "write")
    return site_oauth.start(account, request.url, request.redirectUri, request.scopes)


@app.post(
    "/vault/oauth/complete",
    tags=["Vault"],
    summary="Exchange the authorization code and store the site",
    status_code=201,
    **_returns(Site, 201, "The site"),
)
def oauth_complete(request: OAuthComplete, caller: CurrentCaller) -> dict:
    return site_oauth.complete(account_for(caller, request.workspaceId, "write"), request.state, request.code)


lambda_handler = handler_for(app)
