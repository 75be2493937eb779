"""Conduit's OAuth 2.1 authorization server for `/mcp` (API.md §12.2).

The protocol machinery is Authlib's (RFC 6749 grants, RFC 7636 PKCE, RFC 7591 registration,
RFC 7009 revocation, RFC 8414 metadata validation); this module gives it our storage
(`repositories/oauth.py`), our tokens (`tokens.issue_mcp_access_token`) and our requests (a
Function URL event). Imported only by the OAuth routes: `/mcp` itself verifies its tokens with
PyJWT in the gate and never loads Authlib (about 50 ms of import).

- Clients: registered (RFC 7591: always public, `token_endpoint_auth_method: none`) or a Client ID
  Metadata Document (an https client id, fetched through the guarded client).
- An authorization code lives 60 s, is bound to client, redirect URI, PKCE S256 challenge and
  `resource`, and is single-use: presented twice, the grant made from it is revoked (RFC 6749
  §4.1.2).
- A grant (one per consent) holds the digest of its one current refresh token; a refresh rotates
  it, and a refresh token presented after its rotation revokes the grant (reuse detection).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, JsonPayload, JsonRequest, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError, InvalidRedirectURIError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from conduit.platform.errors import ConduitError
from conduit.platform.ids import iso, new_id, utc_now
from conduit.net.outbound import OutboundError, is_loopback_host
from conduit.repositories.oauth import OAuthRepository
from conduit.repositories.users import UsersRepository
from conduit.platform.settings import get_settings
from conduit.identity.tokens import (
    MCP_ACCESS_TOKEN_TTL_SECONDS,
    issue_consent_ticket,
    issue_mcp_access_token,
    read_consent_ticket,
    verify_mcp_access_token,
)

SCOPES = {
    "tools:read": "See the tools of your vault's sites and your agents",
    "tools:call": "Call the tools of your vault's sites (what they do on your sites, they do as you)",
    "agents:run": "Start runs of your agents",
}
CODE_TTL_SECONDS = 60
REFRESH_TTL_SECONDS = 30 * 86400
CIMD_MAX_BYTES = 16 * 1024
MAX_REDIRECT_URIS = 10
_REFRESH = re.compile(r"^cdr_(?P<grant>[0-9a-f]{24})(?P<user>[0-9a-f]{24})(?P<secret>[A-Za-z0-9_-]{43})$")


def digest(secret: str) -> str:
    """Codes and refresh tokens are stored as SHA-256 digests: 256-bit random values need no slow KDF."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where everything is, from the origin the request reached (the Function URL's, in AWS)."""

    base: str

    @property
    def resource(self) -> str:
        return f"{self.base}/mcp"

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata, checked by Authlib's model of it."""
        document = AuthorizationServerMetadata(
            {
                "issuer": self.base,
                "authorization_endpoint": f"{self.base}/oauth/authorize",
                "token_endpoint": f"{self.base}/oauth/token",
                "registration_endpoint": f"{self.base}/oauth/register",
                "revocation_endpoint": f"{self.base}/oauth/revoke",
                "scopes_supported": list(SCOPES),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["none"],
                "revocation_endpoint_auth_methods_supported": ["none"],
                "code_challenge_methods_supported": ["S256"],
                "client_id_metadata_document_supported": True,
                "service_documentation": f"{self.base}/docs",
            }
        )
        if self.base.startswith("https://"):  # Authlib's model insists on https, which the local stack is not
            document.validate()
        return dict(document)


# --- clients -------------------------------------------------------------------


def redirect_uri_problem(uri: Any) -> str | None:
    """Why a redirect URI cannot be registered: https, or http on a loopback address (RFC 8252
    §7.3, native clients), absolute, no fragment; None when it can."""
    if not isinstance(uri, str) or not uri or len(uri) > 2000:
        return "a redirect URI must be a string of at most 2000 characters"
    try:
        parts = urlsplit(uri)
    except ValueError:
        return f"{uri!r} is not a URL"
    if parts.fragment or "#" in uri:
        return f"{uri!r} has a fragment"
    if not parts.hostname:
        return f"{uri!r} is not an absolute URL"
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        return None
    return f"{uri!r}: only https, or http on a loopback address, is allowed"


def _loopback_match(registered: str, presented: str) -> bool:
    """RFC 8252 §7.3: a loopback redirect URI matches whatever its port."""
    a, b = urlsplit(registered), urlsplit(presented)
    return (
        a.scheme == b.scheme == "http"
        and a.hostname is not None
        and is_loopback_host(a.hostname)
        and a.hostname == b.hostname
        and a.path == b.path
        and a.query == b.query
    )


@dataclass(frozen=True)
class Client(ClientMixin):
    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    client_uri: str | None = None
    metadata_document: bool = False  # a Client ID Metadata Document rather than a registration

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # the request must name its redirect URI (OAuth 2.1)

    def get_allowed_scope(self, scope: str | None) -> str:
        # Unknown scopes were refused before (the server's scopes_supported); none asked means all.
        return scope if scope else " ".join(SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(redirect_uri == uri or _loopback_match(uri, redirect_uri) for uri in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # public clients only

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")

    @property
    def host(self) -> str:
        """The host the person is shown: where the client sends them back."""
        if not self.redirect_uris:
            return ""
        return urlsplit(self.redirect_uris[0]).hostname or ""


def load_client(client_id: Any) -> Client | None:
    if not isinstance(client_id, str) or not client_id or len(client_id) > 2000:
        return None
    if client_id.startswith(("https://", "http://")):
        return _metadata_document_client(client_id)
    item = OAuthRepository().get_client(client_id)
    if item is None:
        return None
    return Client(
        client_id=item["clientId"],
        client_name=item["clientName"],
        redirect_uris=tuple(item["redirectUris"]),
        client_uri=item.get("clientUri"),
    )


def _metadata_document_client(url: str) -> Client | None:
    """A Client ID Metadata Document: the client id is the URL of its metadata, fetched through
    the guarded client (SSRF rules on every hop); its `client_id` must be that URL."""
    from conduit.net.outbound import GuardedClient  # httpx, only for this kind of client

    try:
        response = GuardedClient(timeout=5.0, max_bytes=CIMD_MAX_BYTES).request("GET", url, headers={"Accept": "application/json"})
        if response.status != 200:
            return None
        document = response.json()
    except (OutboundError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("client_id") != url:
        return None
    uris = document.get("redirect_uris")
    if not isinstance(uris, list) or not uris or len(uris) > MAX_REDIRECT_URIS or any(redirect_uri_problem(u) for u in uris):
        return None
    name = document.get("client_name")
    return Client(
        client_id=url,
        client_name=name[:100] if isinstance(name, str) and name.strip() else urlsplit(url).hostname or url,
        redirect_uris=tuple(uris),
        client_uri=document.get("client_uri") if isinstance(document.get("client_uri"), str) else None,
        metadata_document=True,
    )


# --- who a token acts for ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrantUser:
    """The person who approved, the account they chose and the grant their tokens belong to."""

    user_id: str
    account_id: str
    grant_id: str

    def get_user_id(self) -> str:
        return self.user_id


@dataclass(frozen=True)
class StoredCode:
    item: dict[str, Any]

    def get_redirect_uri(self) -> str:
        return self.item["redirectUri"]

    def get_scope(self) -> str:
        return self.item["scope"]

    def get_nonce(self) -> None:
        return None

    def get_auth_time(self) -> None:
        return None

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None

    @property
    def code_challenge(self) -> str:
        return self.item["codeChallenge"]

    @property
    def code_challenge_method(self) -> str:
        return self.item["codeChallengeMethod"]


@dataclass(frozen=True)
class StoredGrant:
    """A grant as the refresh and revocation endpoints see it (Authlib's TokenMixin)."""

    item: dict[str, Any]

    def check_client(self, client: Client) -> bool:
        return hmac.compare_digest(self.item["clientId"], client.get_client_id())

    def get_scope(self) -> str:
        return self.item["scope"]

    def get_expires_in(self) -> int:
        return MCP_ACCESS_TOKEN_TTL_SECONDS

    def is_expired(self) -> bool:
        return False

    def is_revoked(self) -> bool:
        return bool(self.item.get("revoked"))


def _live_user(user_id: str) -> bool:
    user = UsersRepository().get_user(user_id)
    return user is not None and not user.disabled


def _revoke(user_id: str, grant_id: str) -> None:
    OAuthRepository().revoke_grant(user_id, grant_id, iso(utc_now()))


# --- grants ----------------------------------------------------------------------


class S256Only(CodeChallenge):
    """PKCE is required, and only S256 (OAuth 2.1: `plain` is refused). Authlib's `required`
    applies at the token endpoint; OAuth 2.1 requires the challenge at the authorization
    endpoint already, and a missing method would mean `plain`."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("code_challenge is required (PKCE, S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        user: GrantUser = request.user
        data = request.payload.data
        OAuthRepository().put_code(
            digest(code),
            {
                "clientId": request.client.get_client_id(),
                "redirectUri": data["redirect_uri"],
                "scope": request.scope,
                "codeChallenge": data["code_challenge"],
                "codeChallengeMethod": data.get("code_challenge_method") or "S256",
                "resource": data["resource"],
                "userId": user.user_id,
                "accountId": user.account_id,
                "grantId": user.grant_id,
                "expiresAt": int(utc_now().timestamp()) + CODE_TTL_SECONDS,  # also the TTL attribute
            },
        )

    def query_authorization_code(self, code: str, client: Client) -> StoredCode | None:
        if not isinstance(code, str) or not 20 <= len(code) <= 200:
            return None
        claimed, replayed = OAuthRepository().claim_code(digest(code), iso(utc_now()))
        if replayed is not None:  # RFC 6749 §4.1.2: used twice → revoke what it granted
            _revoke(replayed["userId"], replayed["grantId"])
            return None
        if claimed is None or claimed["expiresAt"] < utc_now().timestamp():
            return None
        if not hmac.compare_digest(claimed["clientId"], client.get_client_id()):
            return None
        resource = self.request.payload.data.get("resource")
        if resource is not None and resource != claimed["resource"]:  # RFC 8707 §2.2
            raise InvalidGrantError("The resource is not the one the code was issued for")
        return StoredCode(claimed)

    def delete_authorization_code(self, authorization_code: StoredCode) -> None:
        """Nothing to delete: the code was marked used when it was presented (single use) and its TTL purges it."""

    def authenticate_user(self, authorization_code: StoredCode) -> GrantUser | None:
        item = authorization_code.item
        if not _live_user(item["userId"]):
            return None
        return GrantUser(item["userId"], item["accountId"], item["grantId"])


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every refresh hands out a new refresh token

    def authenticate_refresh_token(self, refresh_token: str) -> StoredGrant | None:
        match = _REFRESH.match(refresh_token) if isinstance(refresh_token, str) else None
        if match is None:
            return None
        user_id, grant_id = f"usr_{match['user']}", f"ogr_{match['grant']}"
        item = OAuthRepository().get_grant(user_id, grant_id)
        if item is None or item.get("revoked"):
            return None
        if not hmac.compare_digest(item["refreshDigest"], digest(refresh_token)):
            _revoke(user_id, grant_id)  # a rotated-out refresh token came back: revoke the family
            return None
        if item["expiresAt"] < utc_now().timestamp():
            return None
        return StoredGrant({**item, "presentedDigest": digest(refresh_token)})

    def authenticate_user(self, refresh_token: StoredGrant) -> GrantUser | None:
        item = refresh_token.item
        if not _live_user(item["userId"]):
            return None
        return GrantUser(item["userId"], item["accountId"], item["grantId"])

    def revoke_old_credential(self, refresh_token: StoredGrant) -> None:
        """Done already: saving the new token swapped the grant's refresh digest conditionally."""


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> StoredGrant | None:
        match = _REFRESH.match(token_string) if isinstance(token_string, str) else None
        if match is not None:
            item = OAuthRepository().get_grant(f"usr_{match['user']}", f"ogr_{match['grant']}")
            if item is not None and hmac.compare_digest(item["refreshDigest"], digest(token_string)):
                return StoredGrant(item)
            return None
        base = self.server.endpoints
        try:
            claims = verify_mcp_access_token(token_string, base.resource, base.base)
        except ConduitError:
            return None
        item = OAuthRepository().get_grant(str(claims["sub"]), str(claims["gid"]))
        return StoredGrant(item) if item is not None else None

    def revoke_token(self, token: StoredGrant, request: OAuth2Request) -> None:
        _revoke(token.item["userId"], token.item["grantId"])


class Registration(ClientRegistrationEndpoint):
    """RFC 7591, open (rate limited by IP like every public route): every client is public."""

    def authenticate_token(self, request: Any) -> bool:
        return True

    def get_server_metadata(self) -> dict[str, Any]:
        return self.server.endpoints.metadata()

    def resolve_public_key(self, request: Any) -> None:
        return None

    def extract_client_metadata(self, request: Any) -> dict[str, Any]:
        data = request.payload.data
        if not isinstance(data, dict):
            raise InvalidClientMetadataError("The body must be a JSON object")
        uris = data.get("redirect_uris")
        if not isinstance(uris, list) or not uris or len(uris) > MAX_REDIRECT_URIS:
            raise InvalidRedirectURIError(f"redirect_uris: a list of 1 to {MAX_REDIRECT_URIS} URIs is required")
        for uri in uris:
            if problem := redirect_uri_problem(uri):
                raise InvalidRedirectURIError(problem)
        name = data.get("client_name")
        if name is not None and (not isinstance(name, str) or len(name) > 100):
            raise InvalidClientMetadataError("client_name: a string of at most 100 characters")
        # Public clients only: the answer says so whatever was asked (RFC 7591 §3.2.1 lets the server decide).
        data = {**data, "token_endpoint_auth_method": "none"}
        for field in ("grant_types", "response_types"):
            data.pop(field, None)
        metadata = super().extract_client_metadata(_Body(data))
        metadata.update(
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        )
        return metadata

    def generate_client_id(self, request: Any) -> str:
        return new_id("mcpc")

    def generate_client_secret(self, request: Any) -> None:
        return None

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        info = super().generate_client_info(request)
        info.pop("client_secret", None)
        info.pop("client_secret_expires_at", None)
        return info

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any) -> Client:
        uris = tuple(client_metadata["redirect_uris"])
        name = client_metadata.get("client_name") or urlsplit(uris[0]).hostname or "An MCP client"
        item = {
            "clientId": client_info["client_id"],
            "clientName": name,
            "redirectUris": list(uris),
            "createdAt": iso(utc_now()),
        }
        if isinstance(client_metadata.get("client_uri"), str):
            item["clientUri"] = client_metadata["client_uri"]
        OAuthRepository().put_client(item)
        return Client(client_id=item["clientId"], client_name=name, redirect_uris=uris)


@dataclass
class _Body:
    """A JSON request whose payload was already read and checked."""

    data: dict[str, Any]

    @property
    def payload(self) -> _Body:
        return self


# --- requests and the server ---------------------------------------------------------


@dataclass
class FormPayload(OAuth2Payload):
    values: dict[str, str]
    lists: dict[str, list[str]]

    @property
    def data(self) -> dict[str, str]:
        return self.values

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self.lists


class FormRequest(OAuth2Request):
    """A request as Authlib reads it: the query (authorization endpoint) or the form (token,
    revocation), parameters given more than once kept for its duplicate check."""

    def __init__(self, method: str, uri: str, pairs: list[tuple[str, str]], headers: dict[str, str]) -> None:
        super().__init__(method, uri, headers=headers)
        lists: dict[str, list[str]] = {}
        for name, value in pairs:
            lists.setdefault(name, []).append(value)
        self.payload = FormPayload({name: values[0] for name, values in lists.items()}, lists)

    @property
    def args(self) -> dict[str, str]:
        return self.payload.values

    @property
    def form(self) -> dict[str, str]:
        return self.payload.values


class JsonBodyRequest(JsonRequest):
    def __init__(self, uri: str, data: Any, headers: dict[str, str]) -> None:
        super().__init__("POST", uri, headers)
        self.payload = _JsonData(data)


@dataclass
class _JsonData(JsonPayload):
    body: Any

    @property
    def data(self) -> Any:
        return self.body


@dataclass(frozen=True, slots=True)
class Reply:
    """What an endpoint answers: status, a JSON body (or an empty one for a redirect), headers."""

    status: int
    body: dict[str, Any] | str
    headers: dict[str, str]


class Server(AuthorizationServer):
    def __init__(self, endpoints: Endpoints) -> None:
        if get_settings().local_mode:
            os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # the local stack is plain http on loopback
        super().__init__(scopes_supported=list(SCOPES))
        self.endpoints = endpoints
        self.register_grant(CodeGrant, [S256Only(required=True)])
        self.register_grant(RefreshGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Registration)
        self.register_token_generator("default", self._tokens)

    def query_client(self, client_id: str) -> Client | None:
        return load_client(client_id)

    def _tokens(self, grant_type: str, client: Client, user: GrantUser, scope: str, expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
        access_token = issue_mcp_access_token(
            user.user_id, user.grant_id, user.account_id, scope, client.get_client_id(), self.endpoints.resource, self.endpoints.base, utc_now()
        )
        refresh_token = f"cdr_{user.grant_id.removeprefix('ogr_')}{user.user_id.removeprefix('usr_')}{secrets.token_urlsafe(32)}"
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": MCP_ACCESS_TOKEN_TTL_SECONDS,
            "refresh_token": refresh_token,
            "scope": scope,
        }

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        user: GrantUser = request.user
        expires = int(utc_now().timestamp()) + REFRESH_TTL_SECONDS
        previous: StoredGrant | None = request.refresh_token
        if previous is None:  # the first tokens of a consent: the grant is born
            code = request.authorization_code.item
            OAuthRepository().put_grant(
                {
                    "grantId": user.grant_id,
                    "userId": user.user_id,
                    "accountId": user.account_id,
                    "clientId": request.client.get_client_id(),
                    "scope": token["scope"],
                    "resource": code["resource"],
                    "refreshDigest": digest(token["refresh_token"]),
                    "revoked": False,
                    "createdAt": iso(utc_now()),
                    "expiresAt": expires,  # TTL: a grant unused for its refresh lifetime goes away
                }
            )
            return
        rotated = OAuthRepository().rotate_refresh(
            user.user_id, user.grant_id, previous.item["presentedDigest"], digest(token["refresh_token"]), expires
        )
        if not rotated:  # a parallel refresh with the same token won, or the grant was revoked meanwhile
            raise InvalidGrantError("The refresh token was already used")

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def create_json_request(self, request: JsonBodyRequest) -> JsonBodyRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> Reply:
        return Reply(status, body if body is not None else "", dict(headers or []))


def new_grant_id() -> str:
    return new_id("ogr")


# --- the authorization endpoint: a page for a person ---------------------------------------

AUTHORIZATION_PARAMETERS = (
    "response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method", "resource",
)
CSRF_COOKIE = "conduit_oauth_csrf"
_CSRF = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True, slots=True)
class Page:
    """HTML for the person, and the CSRF value their browser must hold (set as a cookie)."""

    status: int
    html: str
    csrf: str


def _request_digest(request: FormRequest) -> str:
    values = request.payload.values
    return digest("\n".join(f"{name}={values.get(name, '')}" for name in AUTHORIZATION_PARAMETERS))


def _validated(server: Server, request: FormRequest) -> tuple[Any, OAuth2Error | None]:
    """Authlib's validation of the request (client, redirect URI, response type, scope, PKCE S256
    required), then ours: `resource` must be this server's /mcp (RFC 8707)."""
    try:
        grant = server.get_consent_grant(request)
    except OAuth2Error as error:
        return None, error
    if request.payload.values.get("resource") != server.endpoints.resource:
        error = OAuth2Error(
            description=f"resource must be {server.endpoints.resource}",
            redirect_uri=grant.redirect_uri,
            state=request.payload.state,
        )
        error.error = "invalid_target"
        return None, error
    return grant, None


def _scope_list(scope: str) -> list[tuple[str, str]]:
    return [(name, SCOPES[name]) for name in scope.split() if name in SCOPES]


def _accounts(user_id: str) -> list[dict[str, str]]:
    """The accounts a person may grant: their own, and each workspace they are a member of."""
    from conduit.repositories.workspaces import WorkspacesRepository

    accounts = [{"id": user_id, "label": "Personal account"}]
    repository = WorkspacesRepository()
    for membership in repository.memberships(user_id):
        account, role = repository.membership(membership["workspaceId"], user_id)
        if account is not None and role is not None:
            accounts.append({"id": account.account_id, "label": f"{account.name} (workspace, {role})"})
    return accounts


def authorize(server: Server, request: FormRequest, form: dict[str, str] | None, cookie_csrf: str | None) -> Page | Reply:
    """GET shows the sign-in page; POST signs in, then approves or denies. `form` is the POST's
    fields (None for GET); the authorization request travels in `request` either way."""
    from conduit.identity import oauth_pages

    grant, error = _validated(server, request)
    if error is not None:
        if error.redirect_uri:  # a verified redirect URI: the client hears of it (RFC 6749 §4.1.2.1)
            return server.handle_error_response(request, error)
        # Never redirect to an unverified URI (no open redirect): the person reads why here.
        return Page(400, oauth_pages.problem("This app's request cannot be handled", error.get_error_description() or error.error), cookie_csrf or "")
    client: Client = grant.client
    fields = {name: value for name, value in request.payload.values.items() if name in AUTHORIZATION_PARAMETERS}
    scopes = _scope_list(grant.request.scope)
    if form is None:
        csrf = cookie_csrf if cookie_csrf and _CSRF.match(cookie_csrf) else secrets.token_urlsafe(32)
        return Page(200, oauth_pages.sign_in(client_name=client.client_name, client_host=client.host, scopes=scopes, fields={**fields, "csrf": csrf}), csrf)
    csrf = form.get("csrf", "")
    if not cookie_csrf or not _CSRF.match(cookie_csrf) or not hmac.compare_digest(csrf, cookie_csrf):
        return Page(403, oauth_pages.problem("This form has expired", "It was not sent from this browser's page. Start again from your app."), cookie_csrf or "")
    fields["csrf"] = csrf
    action = form.get("action")
    if action == "deny":
        return server.create_authorization_response(request, grant_user=None, grant=grant)
    if action == "sign_in":
        return _sign_in(request, client, scopes, fields, form, csrf)
    if action == "approve":
        user_id = read_consent_ticket(form.get("ticket", ""), _request_digest(request), csrf)
        if user_id is None:
            page = oauth_pages.sign_in(client_name=client.client_name, client_host=client.host, scopes=scopes, fields=fields, error="Your sign-in has expired; sign in again.")
            return Page(200, page, csrf)
        accounts = _accounts(user_id)
        if form.get("account") not in {account["id"] for account in accounts}:
            return Page(400, oauth_pages.problem("Unknown account", "Choose one of your accounts. Start again from your app."), csrf)
        return server.create_authorization_response(request, grant_user=GrantUser(user_id, form["account"], new_grant_id()), grant=grant)
    return Page(400, oauth_pages.problem("Unknown action", "Start again from your app."), csrf)


def _sign_in(request: FormRequest, client: Client, scopes: list[tuple[str, str]], fields: dict[str, str], form: dict[str, str], csrf: str) -> Page:
    from conduit.identity import oauth_pages
    from conduit.identity.login import check_password

    email = form.get("email", "")[:320]
    try:
        user = check_password(email, form.get("password", "")[:1024])
    except ConduitError as failure:
        page = oauth_pages.sign_in(client_name=client.client_name, client_host=client.host, scopes=scopes, fields=fields, email=email, error=failure.message)
        return Page(200, page, csrf)
    if user.terms_version != get_settings().terms_version:
        error = "Accept Conduit's current terms in the Conduit app first, then try again."
        page = oauth_pages.sign_in(client_name=client.client_name, client_host=client.host, scopes=scopes, fields=fields, email=email, error=error)
        return Page(200, page, csrf)
    ticket = issue_consent_ticket(user.id, _request_digest(request), csrf, utc_now())
    page = oauth_pages.consent(
        client_name=client.client_name, client_host=client.host, email=user.email, scopes=scopes, accounts=_accounts(user.id), fields={**fields, "ticket": ticket}
    )
    return Page(200, page, csrf)


