"""Who is calling: the gate every route passes before validation, and the caller it injects.

Every route of every function is authenticated unless marked `@public`. The
gate (run by the resolver once the route is matched, see conduit.http.api) costs two
DynamoDB requests: one BatchGetItem for user + login (or API key) +
account, one conditional write for the rate limit. A route marked `@prefetch(keys)`
has its own items (the agent, site, session or workspace membership its path names)
read in that same BatchGetItem, so reading one item costs two requests in all. The bearer is a JWT access
token or an API key (`cdk_…`, API.md §13); this gate is the one place that
tells them apart. Routes receive the result with

    def handler(caller: Annotated[Caller, Depends(current_caller)]): ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler.request import Request

from conduit.identity.api_keys import KeyGrant, check_key, is_api_key, parse_key
from conduit.platform.errors import ConduitError
from conduit.identity.rate_limit import RateWindow, count_account_request, count_anonymous_request
from conduit.repositories.accounts import Account
from conduit.repositories.base import set_prefetched
from conduit.repositories.users import User, UsersRepository
from conduit.platform.settings import get_settings
from conduit.identity.tokens import verify_access_token, verify_mcp_access_token

Handler = TypeVar("Handler", bound=Callable[..., Any])
_PUBLIC = "__conduit_public__"
_MCP_CREDENTIALS = "__conduit_mcp_credentials__"
_PREFETCH = "__conduit_prefetch__"
# The keys a route prefetches, from its path parameters and the caller's personal account id.
Prefetch = Callable[[dict[str, str], str], list[tuple[str, str]]]
MAX_PREFETCH_KEY = 200  # a path parameter longer than any id is left to the route (which refuses it)


@dataclass(frozen=True, slots=True)
class Caller:
    user: User
    login_id: str
    account: Account  # the personal account
    key: KeyGrant | None = None  # set when the bearer is an API key (login_id is then "key:<keyId>")

    @property
    def user_id(self) -> str:
        return self.user.id


def public(*, limit_by_ip: bool = False) -> Callable[[Handler], Handler]:
    """Mark a route as needing no token; `limit_by_ip` applies the per-IP limit for unauthenticated calls."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, _PUBLIC, {"limit_by_ip": limit_by_ip})
        return handler

    return mark


def prefetch(keys: Prefetch) -> Callable[[Handler], Handler]:
    """Mark a route whose own item reads the gate may make in its BatchGetItem (issue 22: an
    authenticated read in two requests, not three). `keys(path_parameters, account_id)` names them;
    the route's repository `get` then answers from that read (consistent, this request's), once.
    A key the route ends up not reading (a workspace request reads the workspace's) costs nothing more."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, _PREFETCH, keys)
        return handler

    return mark


def _prefetch_keys(handler: Callable[..., Any], path_parameters: dict[str, str], account_id: str) -> tuple[tuple[str, str], ...]:
    keys = getattr(handler, _PREFETCH, None)
    if keys is None:
        return ()
    return tuple(
        (pk, sk) for pk, sk in keys(path_parameters, account_id) if len(pk) <= MAX_PREFETCH_KEY and len(sk) <= MAX_PREFETCH_KEY
    )


def mcp_credentials(handler: Handler) -> Handler:
    """Mark a route (/mcp) that takes API keys and the access tokens of Conduit's OAuth server
    (API.md §12.2). Tokens are bound both ways: a REST access token is INVALID_TOKEN here, and an
    OAuth access token (audience `<base>/mcp`) is INVALID_TOKEN on the REST API."""
    setattr(handler, _MCP_CREDENTIALS, True)
    return handler


def request_origin(headers: dict[str, str], request_context: dict[str, Any] | None = None) -> str:
    """The origin a request reached: a Function URL's is https; the local stack is plain http."""
    lowered = {name.lower(): value for name, value in headers.items()}
    host = lowered.get("host") or (request_context or {}).get("domainName") or "localhost"
    scheme = lowered.get("x-forwarded-proto") or ("http" if get_settings().local_mode else "https")
    return f"{scheme}://{host}"


def current_caller(request: Request) -> Caller:
    """Dependency: the caller the gate authenticated for this request."""
    return request.context["caller"]


@dataclass(frozen=True, slots=True)
class GateResult:
    caller: Caller | None
    rate_window: RateWindow | None


def _bearer_token(headers: dict[str, str]) -> str:
    authorization = next((value for name, value in headers.items() if name.lower() == "authorization"), None)
    if not authorization:
        raise ConduitError("UNAUTHORIZED")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ConduitError("INVALID_TOKEN")
    return token.strip()


# Routes an API key may not use (API.md §13): managing keys, signing out.
KEYLESS_ROUTES = ("/api-keys", "/auth/logout", "/auth/logout-all")


def bearer_token(headers: dict[str, str]) -> str:
    """The bearer credential of a request, or UNAUTHORIZED / INVALID_TOKEN."""
    return _bearer_token(headers)


def authenticate_key(key: str, prefetch: Callable[[str], tuple[tuple[str, str], ...]] = lambda _: ()) -> Caller:
    """The caller behind an API key: its maker, acting on the account the key names."""
    key_id, user_id = parse_key(key)
    user, item, account = UsersRepository().load_key_state(user_id, key_id, prefetch(user_id))
    grant = check_key(key, item)
    if user is None or account is None or user.disabled:
        raise ConduitError("TOKEN_REVOKED")
    return Caller(user=user, login_id=f"key:{key_id}", account=Account.from_item(account), key=grant)


def authenticate_mcp(headers: dict[str, str], origin: str, prefetch: Callable[[str], tuple[tuple[str, str], ...]] = lambda _: ()) -> Caller:
    """The caller behind an API key or an access token that Conduit's OAuth server issued for
    `<origin>/mcp`: its user, acting on the account chosen at consent with the granted scopes."""
    token = _bearer_token(headers)
    if is_api_key(token):
        return authenticate_key(token, prefetch)
    claims = verify_mcp_access_token(token, f"{origin}/mcp", origin)
    user_id, grant_id = str(claims["sub"]), str(claims["gid"])
    user, grant, account = UsersRepository().load_grant_state(user_id, grant_id, prefetch(user_id))
    if user is None or grant is None or account is None or user.disabled or grant.get("revoked"):
        raise ConduitError("TOKEN_REVOKED")
    scopes = frozenset(str(claims["scope"]).split())
    return Caller(user=user, login_id=f"oauth:{grant_id}", account=Account.from_item(account), key=KeyGrant(grant_id, grant["accountId"], scopes))


def authenticate(headers: dict[str, str], prefetch: Callable[[str], tuple[tuple[str, str], ...]] = lambda _: ()) -> Caller:
    """The caller behind the bearer token, or the 401 that says why not. `prefetch(account_id)`: the
    route's own keys, read in the same BatchGetItem."""
    token = _bearer_token(headers)
    if is_api_key(token):
        return authenticate_key(token, prefetch)
    claims = verify_access_token(token)
    user_id, login_id = str(claims["sub"]), str(claims["sid"])
    user, login, account = UsersRepository().load_request_state(user_id, login_id, user_id, prefetch(user_id))
    revoked = (
        user is None
        or login is None
        or account is None
        or user.disabled
        or login.revoked
        or login.token_version != user.token_version
    )
    if revoked:
        raise ConduitError("TOKEN_REVOKED")
    return Caller(user=user, login_id=login_id, account=Account.from_item(account))


def gate(
    handler: Callable[..., Any],
    route_path: str,
    headers: dict[str, str],
    source_ip: str,
    path_parameters: dict[str, str] | None = None,
) -> GateResult:
    """Authenticate, rate limit, then apply the terms and admin gates (API.md §2, §9)."""
    set_prefetched({})  # nothing read for an earlier request is ever served to this one
    marker = getattr(handler, _PUBLIC, None)
    if marker is not None:
        window = None
        if marker["limit_by_ip"]:
            window = count_anonymous_request(source_ip)
        return GateResult(caller=None, rate_window=window)

    prefetch = lambda account_id: _prefetch_keys(handler, path_parameters or {}, account_id)  # noqa: E731
    if getattr(handler, _MCP_CREDENTIALS, False):
        caller = authenticate_mcp(headers, request_origin(headers), prefetch)
    else:
        caller = authenticate(headers, prefetch)
    account = caller.account
    window = count_account_request(account)
    try:
        if not route_path.startswith("/auth/") and caller.user.terms_version != get_settings().terms_version:
            raise ConduitError("TERMS_NOT_ACCEPTED")
        if route_path.startswith("/admin/") and not caller.user.is_admin:
            raise ConduitError("ADMIN_REQUIRED")
        if caller.key is not None and any(route_path == r or route_path.startswith(r + "/") for r in KEYLESS_ROUTES):
            raise ConduitError("PERMISSION_DENIED", "An API key cannot manage API keys or sign out")
    except ConduitError as error:
        error.headers.update(window.headers())
        raise
    return GateResult(caller=caller, rate_window=window)
