"""OAuth2 with PKCE (S256) for `oauth2` sites, and refresh of site access tokens.

Authorization: `start` fetches the manifest, keeps a pending authorization for
15 minutes (the PKCE verifier sealed with KMS) and returns the authorization
URL; `complete` consumes that state once, exchanges the code at `token_url`
and stores the site with its tokens.

Per manifest (API.md §11): the client id by `manifests.oauth_client_id`; the
redirect URI the caller names (https, or the out-of-band URN), else the
out-of-band URN when the site lists it (the site shows the code, the person
pastes it into `/vault/oauth/complete`); the least scope (`read`) unless the
caller names `scopes`.

Refresh: proactively shortly before the access token expires, and once after
a 401/403 from a tool call. A conditional write on the site is the lock, so
concurrent callers make exactly one exchange: the holder exchanges and stores
the rotated tokens at once; the others wait for the new token. A refresh the
site refuses marks the site `expired`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from pydantic import Field

from conduit.vault import mcp_oauth

from conduit.vault import mcp_sites

from conduit.vault import token_box
from conduit.platform.errors import ConduitError, validation_error
from conduit.platform.ids import iso, utc_now
from conduit.vault.manifests import DEFAULT_CLIENT_ID, OOB_REDIRECT, Manifest, fetch_manifest, oauth_client_id
from conduit.net.outbound import GuardedClient, OutboundError, OutboundRefused, check_url_syntax
from conduit.repositories.accounts import Account
from conduit.repositories.sites import SitesRepository
from conduit.vault.sites import add_site, check_site_url, outbound_client, site_token
from conduit.platform.views import View

PENDING_SECONDS = 15 * 60
REFRESH_AHEAD_SECONDS = 60  # refresh a token that expires within this
LOCK_LEASE_SECONDS = 30  # a crashed refresher blocks others for at most this
WAIT_FOR_REFRESH_SECONDS = 10.0
LEAST_SCOPE = "read"
MAX_EXPIRES_IN_SECONDS = 366 * 24 * 3600


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_at: int | None


class OAuthStarted(View):
    """Where to send the person, and the state /vault/oauth/complete takes back (valid 15 minutes)."""

    authorizationUrl: str = Field(description="Where to send the person to approve")
    state: str
    redirectUri: str | None = Field(
        description="The redirect URI sent to the site; urn:ietf:wg:oauth:2.0:oob means the site shows the code, "
        "which the person pastes into /vault/oauth/complete"
    )
    scopes: list[str] = Field(description="The scopes asked for (by default the least: read)")


class TokenRefused(Exception):
    """The token endpoint answered, and said no (bad code, revoked refresh token, …)."""


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode("ascii").rstrip("=")


def check_redirect_uri(uri: str, client: GuardedClient) -> None:
    """A redirect URI a caller names: the out-of-band URN, or an absolute https:// URL (http:// on
    loopback in local mode, by the one definition of outbound.py) without credentials or fragment.
    Never `javascript:`, `data:` or any other scheme."""
    if uri == OOB_REDIRECT:
        return
    try:
        parsed = check_url_syntax(uri, allow_loopback=client.allow_loopback)
    except OutboundRefused as refused:
        raise validation_error("redirectUri", f"{refused}, or {OOB_REDIRECT}") from None
    if parsed.fragment or "#" in uri:
        raise validation_error("redirectUri", "must not have a fragment (RFC 6749 §3.1.2)")


def _redirect_uri(manifest: Manifest, requested: str | None, client: GuardedClient) -> str | None:
    if requested is not None:
        check_redirect_uri(requested, client)
        if manifest.redirect_uris and requested not in manifest.redirect_uris:
            accepted = ", ".join(manifest.redirect_uris)
            raise validation_error("redirectUri", f"the site accepts only these redirect URIs: {accepted}")
        return requested
    return OOB_REDIRECT if OOB_REDIRECT in manifest.redirect_uris else None


def _requested_scopes(manifest: Manifest, requested: list[str] | None) -> list[str]:
    """Least privilege: `read` (when the site has it) unless the caller names scopes; never more."""
    if not requested:
        return [LEAST_SCOPE] if LEAST_SCOPE in manifest.scopes else []
    unknown = [scope for scope in requested if manifest.scopes and scope not in manifest.scopes]
    if unknown:
        offered = ", ".join(manifest.scopes)
        raise validation_error("scopes", f"not offered by the site: {', '.join(unknown)} (it offers {offered})")
    return list(dict.fromkeys(requested))


def _client_id(manifest: Manifest) -> str:
    client_id = oauth_client_id(manifest)
    if client_id is None:
        registered = ", ".join(client for client, _ in manifest.registered_clients)
        raise validation_error(
            "url",
            f"the site accepts only its registered OAuth clients ({registered}), none of them Conduit's: "
            "ask the site to register a client for Conduit, or set SITE_OAUTH_CLIENT_ID",
        )
    return client_id


def start(
    account: Account, url: str, redirect_uri: str | None, scopes: list[str] | None = None
) -> dict[str, str | list[str] | None]:
    client = outbound_client()
    check_site_url(url, client)
    try:
        manifest, manifest_url = fetch_manifest(url, None, client)
    except ConduitError as not_found:
        # No manifest: an MCP server's own authorization (mcp_oauth), if it asks for one.
        if not_found.code != "MANIFEST_NOT_FOUND" or not mcp_sites.may_be_endpoint(url):
            raise
        if redirect_uri is not None:
            check_redirect_uri(redirect_uri, client)
        mcp = mcp_oauth.discover(url, redirect_uri, client)
        if mcp is None:
            raise
        return _start_mcp(account, url, mcp, redirect_uri or "", scopes)
    if manifest.auth_type != "oauth2":
        raise validation_error("url", "the site does not use OAuth2; add it with a token instead")
    method = manifest.code_challenge_method
    if method and method.upper() != "S256":
        raise validation_error("url", f"the site asks for PKCE method {method[:16]!r}; Conduit uses S256 only")
    redirect_uri = _redirect_uri(manifest, redirect_uri, client)
    requested = _requested_scopes(manifest, scopes)
    client_id = _client_id(manifest)
    state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    SitesRepository().put_pending_authorization(
        state,
        {
            "accountId": account.account_id,
            "url": url,
            "tokenUrl": manifest.token_url,
            "clientId": client_id,
            "redirectUri": redirect_uri or "",
            "codeVerifier": token_box.seal(verifier, account_id=account.account_id, site_id=state, purpose="pkce-verifier"),
            "createdAt": iso(utc_now()),
            "expiresAt": int(time.time()) + PENDING_SECONDS,
        },
    )
    parameters = {
        "response_type": "code",
        "client_id": client_id,
        "state": state,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    }
    if requested:
        parameters["scope"] = " ".join(requested)
    if redirect_uri:
        parameters["redirect_uri"] = redirect_uri
    separator = "&" if "?" in (manifest.authorization_url or "") else "?"
    return OAuthStarted(
        authorizationUrl=f"{manifest.authorization_url}{separator}{urlencode(parameters)}",
        state=state,
        # The out-of-band URN: the site shows the code to the person, who pastes it into /vault/oauth/complete.
        redirectUri=redirect_uri,
        scopes=requested,
    ).body()


def _start_mcp(
    account: Account, url: str, mcp: mcp_oauth.McpOAuth, redirect_uri: str, scopes: list[str] | None
) -> dict[str, str | list[str] | None]:
    state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    SitesRepository().put_pending_authorization(
        state,
        {
            "accountId": account.account_id,
            "url": url,
            "tokenUrl": mcp.token_endpoint,
            "clientId": mcp.client_id,
            "redirectUri": redirect_uri,
            "resource": mcp.resource,
            "codeVerifier": token_box.seal(verifier, account_id=account.account_id, site_id=state, purpose="pkce-verifier"),
            "createdAt": iso(utc_now()),
            "expiresAt": int(time.time()) + PENDING_SECONDS,
        },
    )
    parameters = {
        "response_type": "code",
        "client_id": mcp.client_id,
        "state": state,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
        "redirect_uri": redirect_uri,
        "resource": mcp.resource,  # RFC 8707: the token is for this server only
    }
    if scopes:
        parameters["scope"] = " ".join(dict.fromkeys(scopes))
    separator = "&" if "?" in mcp.authorization_endpoint else "?"
    return OAuthStarted(
        authorizationUrl=f"{mcp.authorization_endpoint}{separator}{urlencode(parameters)}",
        state=state,
        redirectUri=redirect_uri,
        scopes=list(dict.fromkeys(scopes or [])),
    ).body()


def complete(account: Account, state: str, code: str) -> dict[str, Any]:
    pending = SitesRepository().take_pending_authorization(state, account.account_id, int(time.time()))
    if pending is None:
        raise validation_error("state", "unknown, already used or expired; start the authorization again")
    verifier = token_box.unseal(pending["codeVerifier"], account_id=account.account_id, site_id=state, purpose="pkce-verifier")
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "client_id": pending["clientId"]}
    if pending["redirectUri"]:
        form["redirect_uri"] = pending["redirectUri"]
    if pending.get("resource"):  # an MCP server (RFC 8707)
        form["resource"] = pending["resource"]
    try:
        tokens = exchange(pending["tokenUrl"], form, outbound_client())
    except TokenRefused as refused:
        raise validation_error("code", f"the site refused the authorization code ({refused})") from None
    return add_site(
        account, pending["url"], tokens.access_token, tokens.refresh_token, tokens.expires_at, client_id=pending["clientId"],
        oauth={"tokenUrl": pending["tokenUrl"], "oauthResource": pending["resource"]} if pending.get("resource") else None,
    )


def exchange(token_url: str, form: dict[str, str], client: GuardedClient) -> TokenSet:
    """One request to the token endpoint (RFC 6749 §4.1.3 and §6)."""
    try:
        response = client.request("POST", token_url, data=form, headers={"Accept": "application/json"})
    except OutboundError as failure:
        raise ConduitError("SITE_UNAVAILABLE", f"The site's token endpoint could not be reached: {failure}") from None
    if not 200 <= response.status < 300:
        raise TokenRefused(f"HTTP {response.status}")
    try:
        body = response.json()
    except ValueError:
        raise TokenRefused("the token response is not JSON") from None
    access_token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(access_token, str) or not access_token:
        raise TokenRefused("the token response has no access_token")
    refresh_token = body.get("refresh_token")
    return TokenSet(
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        expires_at=_expires_at(body.get("expires_in")),
    )


def _expires_at(expires_in: Any) -> int | None:
    """When the token expires; None (treated as long-lived, refreshed on a 401) for a missing or odd
    value. A lifetime beyond a year is cut to a year: `1e300` must not cost the tokens just issued."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or not expires_in > 0:
        return None
    return int(time.time()) + int(min(expires_in, MAX_EXPIRES_IN_SECONDS))


# --- refresh ---------------------------------------------------------------------


def can_refresh(site: dict[str, Any]) -> bool:
    return "refreshToken" in site and bool(site.get("tokenUrl"))


def token_for_call(site: dict[str, Any]) -> str | None:
    """The access token to send now: refreshed first when it is about to expire."""
    expires_at = site.get("tokenExpiresAt")  # a DynamoDB number: Decimal
    if can_refresh(site) and expires_at is not None and int(expires_at) - time.time() < REFRESH_AHEAD_SECONDS:
        return refresh(site)
    return site_token(site)


def refresh(site: dict[str, Any]) -> str:
    """A fresh access token for the site, with at most one exchange however many callers ask at once.
    `site` is the caller's view of it: its access token is the one found stale."""
    sites = SitesRepository()
    account_id, site_id, stale = site["accountId"], site["siteId"], site.get("accessToken")
    deadline = time.monotonic() + WAIT_FOR_REFRESH_SECONDS
    while True:
        locked = sites.lock_token_refresh(account_id, site_id, int(time.time()), LOCK_LEASE_SECONDS)
        current = locked if locked is not None else sites.get_site(account_id, site_id)
        refreshed, expired = current.get("accessToken") != stale, current["status"] == "expired"
        if locked is not None:
            if not (refreshed or expired):
                return _exchange_and_store(locked)
            sites.release_token_refresh(account_id, site_id)
        if refreshed:  # someone else refreshed already
            return site_token(current)  # type: ignore[return-value]
        if expired:
            raise _expired(current)
        if time.monotonic() > deadline:
            raise ConduitError("TOOL_EXECUTION_ERROR", f"Refreshing the token of {site['domain']} took too long")
        time.sleep(0.1)


def _expired(site: dict[str, Any]) -> ConduitError:
    return ConduitError("TOOL_EXECUTION_ERROR", f"The token of {site['domain']} has expired; reconnect the site")


def _exchange_and_store(site: dict[str, Any]) -> str:
    """Holding the lock: exchange the refresh token and store the new pair at once (lock released)."""
    sites = SitesRepository()
    account_id, site_id = site["accountId"], site["siteId"]
    refresh_token = token_box.unseal(site["refreshToken"], account_id=account_id, site_id=site_id, purpose="refresh")
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": site.get("clientId") or DEFAULT_CLIENT_ID}
    if site.get("oauthResource"):  # an MCP server (RFC 8707)
        form["resource"] = site["oauthResource"]
    try:
        tokens = exchange(site["tokenUrl"], form, outbound_client())
    except TokenRefused:
        sites.release_token_refresh(account_id, site_id, {"status": "expired"})
        raise _expired(site) from None
    except BaseException:
        sites.release_token_refresh(account_id, site_id)
        raise
    values: dict[str, Any] = {
        "accessToken": token_box.seal(tokens.access_token, account_id=account_id, site_id=site_id, purpose="access"),
        "status": "active",
    }
    if tokens.refresh_token:  # rotated: the old one is dead at the site, so store the new one now
        values["refreshToken"] = token_box.seal(tokens.refresh_token, account_id=account_id, site_id=site_id, purpose="refresh")
    remove = ["refreshLockUntil"]
    if tokens.expires_at is not None:
        values["tokenExpiresAt"] = tokens.expires_at
    else:
        remove.append("tokenExpiresAt")
    sites.update(account_id, site_id, values, remove=tuple(remove))  # tokens stored and lock released at once
    return tokens.access_token
