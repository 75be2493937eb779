"""The one guarded HTTP client for every outgoing request (manifests, tool calls, OAuth).

Site URLs come from users, so every request is a potential SSRF. The guard:

- allows `https` only (`http` only to loopback in local mode) and no credentials in URLs;
- parses IP literals itself (including the legacy forms `inet_aton` accepts),
  resolves names once, and refuses unless *every* address is globally routable
  (plus multicast, CGNAT, metadata, and IPv4 embedded in IPv6 addresses);
- connects to the address it checked (the URL host is replaced by the IP; Host
  header and TLS SNI keep the real name), so DNS cannot change between check and use;
- follows redirects itself, re-checking every hop and dropping caller headers
  (the vault token) when the origin changes;
- caps the response size while streaming and the total time across all hops.

`stream()` opens the same checked request and hands back its body as it arrives
(the model providers' server-sent events), under the same size and time caps.

Two address policies. `user` (the default) is all of the above, for every URL a
user or a site supplied. `operator` is for endpoints the operator configured
(OPENAI_BASE_URL, ANTHROPIC_BASE_URL): an OpenAI-compatible server inside the
VPC has a private address and may speak plain http, so private, loopback and
`.internal` addresses are allowed there; cloud metadata, multicast and
unspecified addresses never are.

Errors are this module's own `OutboundError` subclasses with messages safe to
show a user; callers map them to API error codes.
"""

from __future__ import annotations

import codecs
import ipaddress
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from conduit.platform import safe_json
from conduit.platform.settings import get_settings

USER_AGENT = "Conduit/1.0"

Resolver = Callable[[str, int], list[str]]
Policy = Literal["user", "operator"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Patched by tests to move time without sleeping.
_clock = time.monotonic


class OutboundError(Exception):
    """Base of every outbound failure; the message is safe to show a user."""


class OutboundRefused(OutboundError):
    """The URL is not allowed (scheme, credentials, refused address, port, malformed)."""


class OutboundUnavailable(OutboundError):
    """The site could not be reached in time (DNS, connection, TLS, timeout, deadline)."""


class OutboundTooLarge(OutboundError):
    """The response body is larger than allowed."""


class OutboundTooManyRedirects(OutboundError):
    """Too many redirects, or a redirect loop."""


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: httpx.Headers
    content: bytes
    url: str  # final URL after redirects, with the real host name

    def json(self) -> Any:
        # Strict UTF-8 (a leading BOM tolerated), bounded nesting, no NaN: every refusal is a ValueError.
        return safe_json.loads(self.content)


# --- address policy ----------------------------------------------------------------------------

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_INTERNAL_SUFFIX = ".internal"  # private-use TLD: metadata.google.internal, ec2.internal, ...


def _is_loopback(ip: IPAddress) -> bool:
    """127.0.0.0/8 and ::1 (an IPv4-mapped 127.x is the same address)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


# --- local mode: the one definition of what it allows ----------------------------------------
# Local mode (`LOCAL_MODE`, `make dev`) also allows http:// to a loopback host: an IP literal in
# 127.0.0.0/8 or ::1 (any form the resolver accepts: 127.1, 0x7f000001, ::ffff:127.0.0.2), or a
# `localhost` name (RFC 6761). The site URL, every URL in a manifest, OAuth URLs and this client
# all ask `is_loopback_host` / `check_url_syntax`, so they cannot disagree (tests/test_local_mode.py).
LOOPBACK_HOSTS = "127.0.0.0/8, ::1 or localhost"


def accepted_urls(allow_loopback: bool) -> str:
    """What the current mode accepts, for refusal messages."""
    if allow_loopback:
        return f"Only absolute https:// URLs, or http:// on loopback ({LOOPBACK_HOSTS}), are allowed"
    return "Only https:// URLs are allowed"


def is_loopback_host(host: str) -> bool:
    """True for a loopback host by local mode's definition (a name or literal, without DNS)."""
    host = host.lower().strip("[]").rstrip(".")
    if _is_loopback_name(host):
        return True
    try:
        literal = _literal_address(host)
    except OutboundRefused:
        return False
    return literal is not None and _is_loopback(literal)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address leads to through some translation or tunnel.

    `is_global` judges the IPv6 address alone; a NAT64 gateway, 6to4 relay or a
    dual-stack socket would still deliver these to the embedded IPv4 address.
    """
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)  # (server, client): both are contacted
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    ipv4_compatible = int(ip) >> 32 == 0 and int(ip) > 1  # ::a.b.c.d, but not :: or ::1
    if ipv4_compatible or ip in _NAT64 or ip in _IPV4_TRANSLATED:
        found.append(low32)
    return found


def _category(ip: IPAddress) -> str:
    """A short human name for why a non-global address is refused."""
    for label, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return label
    return "not globally routable"


def _refusal(ip: IPAddress, allow_loopback: bool) -> str | None:
    """Why `ip` must not be contacted, or None when it may."""
    if allow_loopback and _is_loopback(ip):
        return None  # local mode: loopback only, never private ranges
    if ip in _METADATA:
        return "cloud metadata"
    if ip.is_multicast:  # is_global is True for some multicast ranges
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address):
        if ip in _THIS_NETWORK:
            return "unspecified"
        if ip in _CGNAT:
            return "shared address space"
    else:
        for inner in _embedded_ipv4(ip):
            reason = _refusal(inner, allow_loopback=False)
            if reason is not None:
                return f"embeds a {reason} IPv4 address"
    if not ip.is_global:
        return _category(ip)
    return None


def _operator_refusal(ip: IPAddress) -> str | None:
    """The operator policy: a configured endpoint may be private (a VPC endpoint) or loopback,
    but a typo must still not send the provider key to the metadata service."""
    inner = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
    if ip in _METADATA or inner in _METADATA:
        return "cloud metadata"
    if ip.is_multicast or inner.is_multicast:
        return "multicast"
    if ip.is_unspecified or inner.is_unspecified or (isinstance(inner, ipaddress.IPv4Address) and inner in _THIS_NETWORK):
        return "unspecified"
    return None


# --- URL parsing --------------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_LEGACY_IPV4_CHARS = frozenset("0123456789abcdefx.")


def _display(url: httpx.URL) -> str:
    """The URL for messages: no query or fragment (they may carry keys), bounded length."""
    text = f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"
    return text if len(text) <= 120 else text[:117] + "..."


def _parse(url: str | httpx.URL, allow_loopback: bool) -> httpx.URL:
    """Parse with httpx, the same parser that builds the request, so the check sees what is sent."""
    raw = str(url)
    try:
        parsed = httpx.URL(raw)
        authority = urlsplit(raw).netloc
    except (httpx.InvalidURL, ValueError, TypeError):
        raise OutboundRefused("The URL is malformed") from None
    if parsed.scheme not in _DEFAULT_PORTS:
        raise OutboundRefused(accepted_urls(allow_loopback))
    # Any "@" in the authority, even with empty userinfo: parsers disagree about such URLs.
    if parsed.userinfo or "@" in authority:
        raise OutboundRefused("URLs with credentials are not allowed")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise OutboundRefused("The URL has an invalid port")
    return parsed


def _normalized_host(url: httpx.URL) -> str:
    """The host, lowercase ASCII (IDNA), without the trailing dot of a fully qualified name."""
    return url.raw_host.decode("ascii").lower().rstrip(".")


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, _normalized_host(url), url.port or _DEFAULT_PORTS.get(url.scheme, 0)


def _is_loopback_name(host: str) -> bool:
    # RFC 6761: localhost and its subdomains are always loopback and never sent to DNS.
    return host == "localhost" or host.endswith(".localhost")


def _host(url: httpx.URL) -> str:
    """The validated, normalized host of a parsed URL."""
    host = _normalized_host(url)
    if not host:
        raise OutboundRefused("The URL has no host")
    if ":" not in host and not set(host) <= _NAME_CHARS:
        raise OutboundRefused("The URL has an invalid host")
    return host


def _literal_address(host: str) -> IPAddress | None:
    """The IP a host denotes without DNS, or None for a name to resolve.

    The legacy IPv4 forms (`2130706433`, `0x7f000001`, `127.1`) are what the
    system resolver would turn them into, so treat them as that address.
    """
    if ":" in host:  # httpx only lets IPv6 literals through in brackets
        if "%" in host:
            raise OutboundRefused("IPv6 zone identifiers are not allowed")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise OutboundRefused("The URL has an invalid host") from None
    if set(host) <= _LEGACY_IPV4_CHARS:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None  # hex-looking name such as "cafe.bad"
    return None


def check_url_syntax(url: str | httpx.URL, *, allow_loopback: bool) -> httpx.URL:
    """Everything about a URL that can be judged without DNS: scheme, credentials, port, host, and
    the address policy for IP literals and loopback or internal names. Used on its own for URLs that
    are only stored now (a manifest's call and OAuth URLs) and as the first step of every fetch."""
    parsed = _parse(url, allow_loopback)
    host = _host(parsed)
    if parsed.scheme == "http" and not (allow_loopback and is_loopback_host(host)):
        raise OutboundRefused(accepted_urls(allow_loopback))  # before any DNS
    literal = _literal_address(host)
    if literal is not None:
        reason = _refusal(literal, allow_loopback)
        if reason is not None:
            raise OutboundRefused(f"{_display(parsed)} resolves to a refused address ({reason})")
    elif _is_loopback_name(host) and not allow_loopback:
        raise OutboundRefused(f"{_display(parsed)} is a loopback name")
    elif host.endswith(_INTERNAL_SUFFIX):
        raise OutboundRefused(f"{_display(parsed)} is an internal name")
    return parsed


def _system_resolver(host: str, port: int) -> list[str]:
    # AF_UNSPEC: both A and AAAA. AI_ADDRCONFIG: skip families this machine cannot reach.
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


@dataclass(frozen=True, slots=True)
class _Target:
    """A checked URL and the addresses it may be fetched from."""

    url: httpx.URL  # as named, with the real host
    host: str
    is_name: bool  # False for IP literals: no SNI then
    addresses: tuple[str, ...]  # all resolved addresses, every one checked

    @property
    def connect_url(self) -> httpx.URL:
        # The checked address itself: no second lookup between check and connect.
        return self.url.copy_with(host=self.addresses[0])


def _visit_key(url: httpx.URL) -> str:
    return str(url.copy_with(fragment=None))


# --- connection pools ---------------------------------------------------------------------------

_POOLS: dict[str, httpx.HTTPTransport] = {}
_POOLS_LOCK = threading.Lock()
_MAX_POOLS = 32


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def _pooled_transport(host: str) -> httpx.BaseTransport:
    """A keep-alive pool per host name.

    httpcore pools connections by (scheme, IP, port), but TLS was verified for a
    name (SNI): one pool per name keeps a connection verified for a.example from
    carrying a request for b.example that resolves to the same address.
    """
    with _POOLS_LOCK:
        transport = _POOLS.pop(host, None)
        if transport is None:
            # No env proxies (trust_env=False): a proxy would do its own DNS, defeating the check.
            transport = httpx.HTTPTransport(verify=_ssl_context(), trust_env=False)
        _POOLS[host] = transport  # re-inserted: the dict's order is least recently used first
        if len(_POOLS) > _MAX_POOLS:
            # Dropped, not closed: another thread may be using it; its sockets close when it is collected.
            del _POOLS[next(iter(_POOLS))]
        return transport


# --- request plumbing ---------------------------------------------------------------------------

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CROSS_ORIGIN_SAFE = frozenset({"accept", "user-agent"})
# Set by this module or by httpx from the body; a caller's value would be wrong or dangerous.
_CALLER_FORBIDDEN = frozenset({"host", "content-length", "transfer-encoding", "connection", "accept-encoding"})


@dataclass(frozen=True, slots=True)
class _Hop:
    """What to send on one hop; redirects derive the next hop from it."""

    method: str
    url: str | httpx.URL
    headers: httpx.Headers
    json: Any
    data: dict[str, str] | None

    def follow(self, status: int, location: httpx.URL, cross_origin: bool) -> _Hop:
        method, keep_body = self.method, True
        # 303 always, and 301/302 after a POST, become a GET without body (what browsers do).
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, keep_body = "GET", False

        def kept(name: str) -> bool:
            if name == "content-type":
                return keep_body
            # Authorization (the vault token) and any other caller header must not reach another host.
            return not cross_origin or name in _CROSS_ORIGIN_SAFE

        headers = httpx.Headers([(k, v) for k, v in self.headers.multi_items() if kept(k.lower())])
        body = {} if keep_body else {"json": None, "data": None}
        return replace(self, method=method, url=location, headers=headers, **body)


def _caller_headers(headers: dict[str, str] | None) -> httpx.Headers:
    clean = httpx.Headers(headers or {})
    for name in _CALLER_FORBIDDEN:
        clean.pop(name, None)
    clean.setdefault("User-Agent", USER_AGENT)
    return clean


@contextmanager
def _transport_errors(display: str) -> Iterator[None]:
    """Map httpx failures (connect, TLS, timeouts, protocol) to OutboundUnavailable."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise OutboundUnavailable(f"{display} did not answer in time") from exc
    except httpx.TransportError as exc:
        raise OutboundUnavailable(f"{display} could not be reached") from exc


class _Inflater:
    """Undo a Content-Encoding chunk by chunk, never producing more than the room left.

    We ask for `identity`; servers that compress anyway get decoded here with a
    bound, so a small gzip bomb stops at the cap instead of filling memory.
    """

    def __init__(self, encoding: str, display: str) -> None:
        self._display = display
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise OutboundUnavailable(f"{display} sent an unsupported content encoding")

    def feed(self, chunk: bytes, room: int) -> bytes:
        if self._zlib is None:
            return chunk
        try:
            # At most room + 1 bytes: one more than fits is enough to know it is too large.
            return self._zlib.decompress(chunk, room + 1)
        except zlib.error:
            raise self._corrupt() from None

    def finish(self, received: int) -> None:
        """A compressed body that stops early would otherwise be returned truncated."""
        if self._zlib is not None and received and not self._zlib.eof:
            raise self._corrupt()

    def _corrupt(self) -> OutboundUnavailable:
        return OutboundUnavailable(f"{self._display} sent a corrupt compressed body")


def _read_capped(response: httpx.Response, method: str, limit: int, deadline: float, display: str) -> bytes:
    """Stream the body, stopping as soon as it exceeds `limit` or the deadline passes."""
    return b"".join(_capped_chunks(response, method, limit, deadline, display))


def _capped_chunks(response: httpx.Response, method: str, limit: int, deadline: float, display: str) -> Iterator[bytes]:
    """The body's chunks as they arrive (decoded), stopping as soon as it exceeds `limit` or the deadline passes."""
    too_large = OutboundTooLarge(f"The response from {display} is larger than {limit} bytes")
    declared = response.headers.get("Content-Length", "")
    if method != "HEAD" and declared.isdigit() and int(declared) > limit:  # HEAD declares a body it never sends
        raise too_large
    inflater = _Inflater(response.headers.get("Content-Encoding", ""), display)
    produced = 0
    received = 0
    for chunk in response.stream:
        received += len(chunk)
        piece = inflater.feed(chunk, limit - produced)
        produced += len(piece)
        if received > limit or produced > limit:
            raise too_large
        if _clock() > deadline:
            raise OutboundUnavailable(f"{display} did not answer in time")
        if piece:
            yield piece
    inflater.finish(received)


class OutboundStream:
    """An answer whose body is read as it arrives (`GuardedClient.stream`), under the request's caps."""

    def __init__(self, response: httpx.Response, target_url: str, method: str, limit: int, deadline: float) -> None:
        self.status = response.status_code
        self.headers = response.headers
        self.url = target_url
        self._response = response
        self._display = _display(httpx.URL(target_url))
        self._chunks = _capped_chunks(response, method, limit, deadline, self._display)

    def iter_bytes(self) -> Iterator[bytes]:
        """Each chunk the moment it arrives; OutboundUnavailable/OutboundTooLarge as `request` would."""
        with _transport_errors(self._display):
            yield from self._chunks

    def iter_lines(self) -> Iterator[str]:
        """The body as text lines (without their ending), each as soon as it is complete."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        for chunk in self.iter_bytes():
            pending += decoder.decode(chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                yield line.removesuffix("\r")
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending.removesuffix("\r")

    def read(self) -> bytes:
        return b"".join(self.iter_bytes())

    def close(self) -> None:
        self._response.close()


# --- the client ---------------------------------------------------------------------------------


class GuardedClient:
    """Checks, connects to the checked address, follows redirects safely, caps size and time."""

    def __init__(
        self,
        *,
        allow_loopback: bool | None = None,
        resolver: Resolver | None = None,
        transport: httpx.BaseTransport | None = None,
        max_bytes: int = 1_048_576,
        timeout: float = 10.0,
        max_redirects: int = 3,
        policy: Policy = "user",
    ) -> None:
        self.allow_loopback = get_settings().local_mode if allow_loopback is None else allow_loopback
        self.policy = policy
        self._resolver = resolver or _system_resolver
        self._transport = transport  # None: the shared per-host pools
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects

    def check_url(self, url: str) -> list[str]:
        """Validate `url` and return its addresses (all allowed); raise OutboundRefused or OutboundUnavailable."""
        return list(self._check(url).addresses)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        max_bytes: int | None = None,
        timeout: float | None = None,
    ) -> OutboundResponse:
        opened = self._open(method, url, headers, json, data, max_bytes, timeout)
        response, target, sent_method, limit, deadline = opened
        return self._finish(response, target, sent_method, limit, deadline)

    @contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        max_bytes: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[OutboundStream]:
        """`request`, with the body read as it arrives; the connection is released on leaving."""
        opened = self._open(method, url, headers, json, data, max_bytes, timeout)
        response, target, sent_method, limit, deadline = opened
        try:
            yield OutboundStream(response, str(target.url), sent_method, limit, deadline)
        finally:
            response.close()

    def _open(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        json: Any,
        data: dict[str, str] | None,
        max_bytes: int | None,
        timeout: float | None,
    ) -> tuple[httpx.Response, _Target, str, int, float]:
        """Send, following redirects; the final response with its body still unread."""
        if json is not None and data is not None:
            raise TypeError("pass json or data, not both")
        limit = self.max_bytes if max_bytes is None else max_bytes
        budget = self.timeout if timeout is None else timeout
        deadline = _clock() + budget
        hop = _Hop(method.upper(), url, _caller_headers(headers), json, data)
        visited: set[str] = set()
        for _ in range(self.max_redirects + 1):
            target = self._check(hop.url)
            visited.add(_visit_key(target.url))
            response = self._send(target, hop, budget, deadline)
            location = response.headers.get("Location") if response.status_code in _REDIRECTS else None
            if location is None:
                return response, target, hop.method, limit, deadline
            response.close()  # the body of a redirect is never read
            hop = self._next_hop(hop, target, response.status_code, location, visited)
        raise OutboundTooManyRedirects(f"{_display(target.url)} redirected more than {self.max_redirects} times")

    # -- steps --

    def _check(self, url: str | httpx.URL) -> _Target:
        if self.policy == "operator":
            # An endpoint the operator configured (OPENAI_BASE_URL, …) may be http and private
            # (a VPC endpoint); only the address rules of _operator_refusal apply.
            parsed = _parse(url, allow_loopback=True)
        else:
            parsed = check_url_syntax(url, allow_loopback=self.allow_loopback)
        host = _host(parsed)
        literal = _literal_address(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            addresses = self._resolve_name(host, parsed)
        display = _display(parsed)
        for address in addresses:
            self._allowed_address(address, display)
        return _Target(parsed, host, literal is None, tuple(addresses))

    def _resolve_name(self, host: str, url: httpx.URL) -> list[str]:
        if _is_loopback_name(host):  # never sent to DNS; check_url_syntax refused it outside local mode
            return ["127.0.0.1", "::1"]
        try:
            found = self._resolver(host, url.port or _DEFAULT_PORTS[url.scheme])
        except Exception:  # any resolver failure (gaierror, timeout, ...) means "cannot reach"
            found = []
        if not found:
            raise OutboundUnavailable(f"{host} could not be resolved")
        return list(dict.fromkeys(found))  # unique, resolver order kept

    def _allowed_address(self, address: str, display: str) -> IPAddress:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise OutboundRefused(f"{display} resolves to an invalid address") from None
        reason = _operator_refusal(ip) if self.policy == "operator" else _refusal(ip, self.allow_loopback)
        if reason is not None:
            raise OutboundRefused(f"{display} resolves to a refused address ({reason})")
        return ip

    def _send(self, target: _Target, hop: _Hop, budget: float, deadline: float) -> httpx.Response:
        display = _display(target.url)
        remaining = deadline - _clock()
        if remaining <= 0:
            raise OutboundUnavailable(f"{display} did not answer in time")
        headers = httpx.Headers(hop.headers)
        headers["Host"] = target.url.netloc.decode("ascii")
        headers["Accept-Encoding"] = "identity"
        # Each phase (connect, write, read, pool) gets the budget, but never past the overall deadline.
        extensions: dict[str, Any] = {"timeout": httpx.Timeout(min(budget, remaining)).as_dict()}
        if target.url.scheme == "https" and target.is_name:
            # We connect to an IP; TLS SNI and certificate checks must still use the real name.
            extensions["sni_hostname"] = target.host
        transport = self._transport or _pooled_transport(target.host)
        with _transport_errors(display):
            request = httpx.Request(
                hop.method, target.connect_url, headers=headers, json=hop.json, data=hop.data, extensions=extensions
            )
            return transport.handle_request(request)

    def _next_hop(self, hop: _Hop, target: _Target, status: int, location: str, visited: set[str]) -> _Hop:
        try:
            next_url = target.url.join(location)  # relative Locations resolve against the named URL
        except (httpx.InvalidURL, ValueError):
            raise OutboundRefused(f"{_display(target.url)} redirected to a malformed URL") from None
        if _visit_key(next_url) in visited:
            raise OutboundTooManyRedirects(f"{_display(target.url)} redirects in a loop")
        return hop.follow(status, next_url, cross_origin=_origin(next_url) != _origin(target.url))

    def _finish(
        self, response: httpx.Response, target: _Target, method: str, limit: int, deadline: float
    ) -> OutboundResponse:
        display = _display(target.url)
        try:
            with _transport_errors(display):
                content = _read_capped(response, method, limit, deadline, display)
        finally:
            response.close()
        return OutboundResponse(response.status_code, response.headers, content, str(target.url))
