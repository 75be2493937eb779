"""/vault/sites: connect sites, read their tools, replace tokens, refresh manifests (API.md §6)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from pydantic import Field, StringConstraints

from conduit.vault import site_oauth

from conduit.vault import sites as vault
from conduit.identity.access import account_for
from conduit.http.api import handler_for, make_resolver
from conduit.identity.gate import prefetch
from conduit.repositories.sites import prefetch_site
from conduit.http.routes import ACCOUNT_ACCESS, Cursor, CurrentCaller, Limit, Page, StrictBody, WorkspaceId, answers, page_body
from conduit.vault.site_oauth import OAuthStarted
from conduit.vault.sites import Site

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


class SitePage(Page[Site]):
    """Sites without their tools."""


SITE_NOT_FOUND = ("NOT_FOUND", "No site with this id in the account")
INVALID_URL = ("INVALID_URL", "Not an absolute https:// URL on a public address (local mode: http:// on loopback too)")
MANIFEST_CODES = (
    ("MANIFEST_NOT_FOUND", "No manifest (nor MCP server) answered at the URL; the message lists every URL tried"),
    ("MANIFEST_INVALID", "The manifest (or the MCP server's tool list) is unusable; `details` say why"),
    ("SITE_UNAVAILABLE", "The MCP server could not be reached"),
)


@app.post(
    "/vault/sites",
    tags=["Vault"],
    summary="Connect a site: fetch and validate its manifest, store its token",
    description="A URL with a path or a query is the manifest itself (or an MCP endpoint); a bare origin is looked up at the "
    "well-known manifest paths (docs/API.md, Sites). Nothing is stored unless everything succeeded.",
    **answers(
        INVALID_URL,
        *MANIFEST_CODES,
        ("TOKEN_EXISTS", "The account has a site on this domain already"),
        ("VAULT_LIMIT_REACHED", "The account has as many sites as its tier allows (maxSites)"),
        *ACCOUNT_ACCESS,
        status=201,
        description="The site, with its tools and warnings",
    ),
)
def add_site(site: NewSite, caller: CurrentCaller) -> Site:
    return vault.add_site(account_for(caller, site.workspaceId, "write"), site.url, site.token, site.refreshToken)


@app.get(
    "/vault/sites",
    tags=["Vault"],
    summary="The account's sites (tokens are never returned)",
    **answers(*ACCOUNT_ACCESS, description="A page of sites, without their tools"),
)
def list_sites(
    caller: CurrentCaller,
    workspace_id: WorkspaceId = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> SitePage:
    return page_body(vault.list_sites(account_for(caller, workspace_id, "read"), limit, cursor))


@app.get(
    "/vault/sites/<siteId>",
    tags=["Vault"],
    summary="A site with its tools",
    **answers(SITE_NOT_FOUND, *ACCOUNT_ACCESS, description="The site"),
)
@prefetch(prefetch_site)
def get_site(siteId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> Site:  # noqa: N803
    return vault.get_site(account_for(caller, workspace_id, "read"), siteId)


@app.patch(
    "/vault/sites/<siteId>",
    tags=["Vault"],
    summary="Replace the stored token",
    description="This also makes an expired site active again.",
    **answers(SITE_NOT_FOUND, ("VALIDATION_ERROR", "The token is empty"), *ACCOUNT_ACCESS, description="The site"),
)
@prefetch(prefetch_site)
def replace_token(
    siteId: str, change: TokenChange, caller: CurrentCaller, workspace_id: WorkspaceId = None  # noqa: N803
) -> Site:
    return vault.replace_token(account_for(caller, workspace_id, "write"), siteId, change.token)


@app.delete(
    "/vault/sites/<siteId>",
    tags=["Vault"],
    summary="Remove a site",
    **answers(SITE_NOT_FOUND, *ACCOUNT_ACCESS, status=204, description="Removed"),
)
@prefetch(prefetch_site)
def delete_site(siteId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None):  # noqa: N803
    vault.delete_site(account_for(caller, workspace_id, "write"), siteId)
    return Response(status_code=204)


@app.post(
    "/vault/sites/<siteId>/refresh",
    tags=["Vault"],
    summary="Re-fetch the manifest (the old one stays on failure)",
    description="An MCP site lists its tools again. On any failure the stored manifest stays in use and the error is answered.",
    **answers(SITE_NOT_FOUND, *MANIFEST_CODES, *ACCOUNT_ACCESS, description="The site, with its new tools"),
)
def refresh_site(siteId: str, caller: CurrentCaller, workspace_id: WorkspaceId = None) -> Site:  # noqa: N803
    return vault.refresh_manifest(account_for(caller, workspace_id, "write"), siteId)


@app.post(
    "/vault/oauth/start",
    tags=["Vault"],
    summary="Start OAuth2 (PKCE S256) for an oauth2 site or an MCP server (RFC 9728, 8414, 7591, 8707)",
    description="Send the person to authorizationUrl; the site sends the code back to redirectUri (or shows it, for the "
    "out-of-band URN). Then POST /vault/oauth/complete with the state and the code, within 15 minutes.",
    **answers(
        INVALID_URL,
        (
            "VALIDATION_ERROR",
            "The site does not use OAuth2, asks for another PKCE method, does not offer a scope asked for, "
            "accepts only clients other than Conduit's, or the redirect URI is not usable",
        ),
        *MANIFEST_CODES,
        *ACCOUNT_ACCESS,
        description="Where to send the person",
    ),
)
def oauth_start(request: OAuthStart, caller: CurrentCaller) -> OAuthStarted:
    account = account_for(caller, request.workspaceId, "write")
    return site_oauth.start(account, request.url, request.redirectUri, request.scopes)


@app.post(
    "/vault/oauth/complete",
    tags=["Vault"],
    summary="Exchange the authorization code and store the site",
    **answers(
        ("VALIDATION_ERROR", "The state is unknown, already used or expired, or the site refused the code"),
        ("SITE_UNAVAILABLE", "The site (its token endpoint, or the MCP server) could not be reached"),
        INVALID_URL,
        *MANIFEST_CODES,
        ("TOKEN_EXISTS", "The account has a site on this domain already"),
        ("VAULT_LIMIT_REACHED", "The account has as many sites as its tier allows (maxSites)"),
        *ACCOUNT_ACCESS,
        status=201,
        description="The site",
    ),
)
def oauth_complete(request: OAuthComplete, caller: CurrentCaller) -> Site:
    return site_oauth.complete(account_for(caller, request.workspaceId, "write"), request.state, request.code)


lambda_handler = handler_for(app)
