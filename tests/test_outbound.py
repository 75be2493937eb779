"""The guarded outbound client: SSRF refusals, connect-to-checked-address, redirects, caps.

No test sends traffic beyond loopback: names go through `FakeResolver` (an
unknown name fails the test), and every non-loopback address only ever meets
an `httpx.MockTransport`. Real connections go only to servers on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import gzip
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from conduit.net import outbound
from conduit.platform.errors import ConduitError
from conduit.net.outbound import (
    GuardedClient,
    OutboundError,
    OutboundRefused,
    OutboundResponse,
    OutboundTooLarge,
    OutboundTooManyRedirects,
    OutboundUnavailable,
)

PUBLIC = "93.184.216.34"
OTHER_PUBLIC = "93.184.216.35"
PUBLIC6 = "2606:2800:220:1:248:1893:25c8:1946"

DNS: dict[str, list[str]] = {
    "site.example": [PUBLIC],
    "other.example": [OTHER_PUBLIC],
    "site6.example": [PUBLIC6],
    "private.example": ["10.0.0.7"],
    "mixed.example": [PUBLIC, "10.0.0.8"],
    "mixed6.example": [PUBLIC6, "fd00::1"],
    "loopback.example": ["127.0.0.1"],
    "metadata.example": ["169.254.169.254"],
}


class FakeResolver:
    """A DNS table; any name outside it fails the test (no real lookups, ever)."""

    def __init__(self, table: dict[str, list[str]] | None = None, error: Exception | None = None) -> None:
        self.table = DNS if table is None else table
        self.error = error
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if self.error is not None:
            raise self.error
        if host not in self.table:
            pytest.fail(f"unexpected DNS lookup of {host!r}")
        return list(self.table[host])


def forbidden_transport() -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        pytest.fail(f"the transport was called for {request.url}")

    return httpx.MockTransport(handler)


Route = Callable[[httpx.Request], httpx.Response]


class Sites:
    """A MockTransport handler answering by the URL as the site sees it (scheme, Host header, path)."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = f"{request.url.scheme}://{request.headers['host']}{request.url.raw_path.decode()}"
        if key not in self.routes:
            pytest.fail(f"unexpected request to {key}")
        return self.routes[key](request)

    def client(self, *, max_bytes: int = 1_048_576, timeout: float = 10.0, max_redirects: int = 3) -> GuardedClient:
        return GuardedClient(
            allow_loopback=False,
            resolver=FakeResolver(),
            transport=httpx.MockTransport(self),
            max_bytes=max_bytes,
            timeout=timeout,
            max_redirects=max_redirects,
        )


def ok(body: object = None) -> Route:
    return lambda request: httpx.Response(200, json={"ok": True} if body is None else body)


def redirect(status: int, location: str) -> Route:
    return lambda request: httpx.Response(status, headers={"Location": location})


# --- SSRF corpus --------------------------------------------------------------------------------

REFUSED_ANY_MODE = [
    "ftp://site.example/file",
    "file:///etc/passwd",
    "gopher://site.example:70/_x",
    "javascript:alert(1)",
    "site.example/no-scheme",
    "https://user:pw@site.example/",
    "https://user@site.example/",
    "https://@site.example/",
    "https:///no-host",
    "https://site.example:0/",
    "https://site.example:70000/",
    "https://bad\\host/",
    "https://0.0.0.0/",
    "https://0/",
    "https://10.1.2.3/",
    "https://172.16.5.4/",
    "https://192.168.1.1/",
    "https://100.64.1.1/",
    "https://198.18.0.1/",
    "https://169.254.169.254/latest/meta-data/",
    "https://255.255.255.255/",
    "https://224.0.0.1/",
    "https://[::]/",
    "https://[::ffff:169.254.169.254]/",
    "https://[::ffff:10.0.0.1]/",
    "https://[::ffff:0:a00:1]/",  # IPv4-translated 10.0.0.1
    "https://[::10.0.0.1]/",  # IPv4-compatible
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",
    "https://[fc00::1]/",
    "https://[fd00:ec2::254]/",
    "https://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "https://[64:ff9b::7f00:1]/",  # NAT64 of loopback is not loopback
    "https://[2002:a00:1::]/",  # 6to4 of 10.0.0.1
    "https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/",  # Teredo, client 10.0.0.1
    "https://[ff02::1]/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://private.example/",
    "https://mixed.example/",
    "https://mixed6.example/",
    "https://metadata.example/",
    "http://site.example/",  # http only for loopback, even in local mode
    "http://10.0.0.1/",
]

REFUSED_UNLESS_LOOPBACK_ALLOWED = [
    "https://127.0.0.1/",
    "https://127.1/",
    "https://2130706433/",
    "https://0x7f000001/",
    "https://0177.0.0.1/",
    "https://0177.1/",
    "https://0x7f.1/",
    "https://017700000001/",
    "https://127.0.0.1:8080/",
    "https://[::1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://localhost/",
    "https://api.localhost/",
    "https://LOCALHOST./",
    "https://loopback.example/",
    "http://127.0.0.1:8080/",
    "http://localhost:8080/",
]

CORPUS = [(url, mode) for url in REFUSED_ANY_MODE for mode in (False, True)] + [
    (url, False) for url in REFUSED_UNLESS_LOOPBACK_ALLOWED
]


def test_the_corpus_is_large_enough() -> None:
    assert len(set(REFUSED_ANY_MODE + REFUSED_UNLESS_LOOPBACK_ALLOWED)) >= 30


@pytest.mark.parametrize(("url", "allow_loopback"), CORPUS)
def test_ssrf_corpus_is_refused_without_any_request(url: str, allow_loopback: bool) -> None:
    client = GuardedClient(allow_loopback=allow_loopback, resolver=FakeResolver(), transport=forbidden_transport())
    with pytest.raises(OutboundRefused):
        client.check_url(url)
    with pytest.raises(OutboundRefused):
        client.request("GET", url, headers={"Authorization": "Bearer secret"})


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1/", "https://2130706433/", "https://[::1]/", "https://[fc00::1]/", "https://localhost/"],
)
def test_literals_and_loopback_names_never_reach_the_resolver(url: str) -> None:
    resolver = FakeResolver({})
    with pytest.raises(OutboundRefused):
        GuardedClient(allow_loopback=False, resolver=resolver).check_url(url)
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://10.0.0.1/path?token=abc#frag", "https://10.0.0.1/path resolves to a refused address (private)"),
        ("https://private.example/", "https://private.example/ resolves to a refused address (private)"),
        ("https://[::1]/", "https://[::1]/ resolves to a refused address (loopback)"),
        ("https://169.254.169.254/", "https://169.254.169.254/ resolves to a refused address (cloud metadata)"),
        ("https://100.64.1.1/", "https://100.64.1.1/ resolves to a refused address (shared address space)"),
        (
            "https://[::ffff:7f00:1]/",
            "https://[::ffff:7f00:1]/ resolves to a refused address (embeds a loopback IPv4 address)",
        ),
        ("https://[ff02::1]/", "https://[ff02::1]/ resolves to a refused address (multicast)"),
        ("https://user:hunter2@site.example/", "URLs with credentials are not allowed"),
        ("ftp://site.example/", "Only https:// URLs are allowed"),
    ],
)
def test_refusal_messages_are_short_and_leak_nothing(url: str, message: str) -> None:
    with pytest.raises(OutboundRefused) as caught:
        GuardedClient(allow_loopback=False, resolver=FakeResolver()).check_url(url)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("https://site.example/", [PUBLIC]),
        ("https://SITE.example./x", [PUBLIC]),
        ("https://site6.example/", [PUBLIC6]),
        ("https://93.184.216.34/", [PUBLIC]),
        ("https://1572395042/", [PUBLIC]),  # decimal form of 93.184.216.34
        (f"https://[{PUBLIC6}]:8443/", [PUBLIC6]),
    ],
)
def test_public_urls_pass_the_check(url: str, addresses: list[str]) -> None:
    assert GuardedClient(allow_loopback=False, resolver=FakeResolver()).check_url(url) == addresses


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("https://127.1/", ["127.0.0.1"]),
        ("https://0x7f000001/", ["127.0.0.1"]),
        ("https://[::ffff:7f00:1]/", ["::ffff:127.0.0.1"]),
        ("https://localhost/", ["127.0.0.1", "::1"]),
        ("http://[::1]/", ["::1"]),
        ("https://loopback.example:8080/", ["127.0.0.1"]),  # a name: judged by its addresses
    ],
)
def test_local_mode_allows_loopback_in_every_form(url: str, addresses: list[str]) -> None:
    assert GuardedClient(allow_loopback=True, resolver=FakeResolver()).check_url(url) == addresses


def test_the_resolver_gets_the_port() -> None:
    resolver = FakeResolver()
    GuardedClient(allow_loopback=False, resolver=resolver).check_url("https://site.example:8443/")
    assert resolver.calls == [("site.example", 8443)]


# --- connect to the checked address -------------------------------------------------------------


def test_the_request_goes_to_the_checked_ip_with_the_real_host_and_sni() -> None:
    sites = Sites({"https://site.example/api?x=1": ok({"hello": "world"})})
    response = sites.client().request("GET", "https://site.example/api?x=1")
    (request,) = sites.requests
    assert request.url.host == PUBLIC
    assert request.headers["host"] == "site.example"
    assert request.extensions["sni_hostname"] == "site.example"
    assert request.headers["user-agent"] == "Conduit/1.0"
    assert request.headers["accept-encoding"] == "identity"
    assert isinstance(response, OutboundResponse)
    assert (response.status, response.url, response.json()) == (200, "https://site.example/api?x=1", {"hello": "world"})


def test_ipv6_addresses_are_bracketed_and_ports_kept() -> None:
    sites = Sites({"https://site6.example:8443/": ok()})
    sites.client().request("GET", "https://site6.example:8443/")
    (request,) = sites.requests
    assert request.url.host == PUBLIC6
    assert request.url.port == 8443
    assert str(request.url).startswith(f"https://[{PUBLIC6}]:8443/")
    assert request.headers["host"] == "site6.example:8443"


def test_ip_literal_urls_get_no_sni_name() -> None:
    sites = Sites({f"https://{PUBLIC}/": ok()})
    sites.client().request("GET", f"https://{PUBLIC}/")
    assert "sni_hostname" not in sites.requests[0].extensions


def test_caller_cannot_override_host_or_encoding() -> None:
    sites = Sites({"https://site.example/": ok()})
    headers = {"Host": "internal.example", "Accept-Encoding": "gzip", "User-Agent": "custom/2"}
    sites.client().request("GET", "https://site.example/", headers=headers)
    request = sites.requests[0]
    assert request.headers["host"] == "site.example"
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["user-agent"] == "custom/2"


# --- redirects ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "https://private.example/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/",
        "https://mixed.example/",
        "http://site.example/",
        "https://user:pw@site.example/",
        "file:///etc/passwd",
    ],
)
def test_redirect_to_a_refused_url_stops_before_a_second_request(location: str) -> None:
    sites = Sites({"https://site.example/start": redirect(302, location)})
    with pytest.raises(OutboundRefused) as caught:
        sites.client().request("GET", "https://site.example/start", headers={"Authorization": "Bearer secret"})
    assert len(sites.requests) == 1
    assert "secret" not in str(caught.value)


def test_redirect_loop() -> None:
    sites = Sites(
        {
            "https://site.example/a": redirect(302, "/b"),
            "https://site.example/b": redirect(301, "https://site.example/a#again"),
        }
    )
    with pytest.raises(OutboundTooManyRedirects, match="loop"):
        sites.client(max_redirects=10).request("GET", "https://site.example/a")
    assert len(sites.requests) == 2


def chain(length: int) -> dict[str, Route]:
    routes = {f"https://site.example/r{i}": redirect(307, f"/r{i + 1}") for i in range(length)}
    routes[f"https://site.example/r{length}"] = ok()
    return routes


def test_too_many_redirects() -> None:
    sites = Sites(chain(4))
    with pytest.raises(OutboundTooManyRedirects):
        sites.client(max_redirects=3).request("GET", "https://site.example/r0")
    assert len(sites.requests) == 4


def test_exactly_max_redirects_is_fine() -> None:
    sites = Sites(chain(3))
    response = sites.client(max_redirects=3).request("GET", "https://site.example/r0")
    assert (response.status, response.url) == (200, "https://site.example/r3")
    assert len(sites.requests) == 4


def test_cross_origin_redirect_drops_caller_headers_for_good() -> None:
    sites = Sites(
        {
            "https://site.example/start": redirect(302, "https://other.example/land"),
            "https://other.example/land": redirect(302, "https://site.example/back"),
            "https://site.example/back": ok(),
        }
    )
    headers = {"Authorization": "Bearer secret", "X-Api-Key": "key", "Cookie": "a=b", "Accept": "application/json"}
    response = sites.client().request("GET", "https://site.example/start", headers=headers)
    first, other, back = sites.requests
    assert first.headers["authorization"] == "Bearer secret"
    assert other.url.host == OTHER_PUBLIC and other.headers["host"] == "other.example"
    for request in (other, back):  # once dropped, never restored
        assert "authorization" not in request.headers
        assert "x-api-key" not in request.headers
        assert "cookie" not in request.headers
        assert request.headers["accept"] == "application/json"
        assert request.headers["user-agent"] == "Conduit/1.0"
    assert response.url == "https://site.example/back"


def test_another_port_is_another_origin() -> None:
    sites = Sites(
        {
            "https://site.example/start": redirect(302, "https://site.example:8443/x"),
            "https://site.example:8443/x": ok(),
        }
    )
    sites.client().request("GET", "https://site.example/start", headers={"Authorization": "Bearer secret"})
    assert "authorization" not in sites.requests[1].headers


def test_same_origin_redirect_keeps_authorization() -> None:
    sites = Sites(
        {
            "https://site.example/start": redirect(308, "/next?page=2"),
            "https://site.example/next?page=2": ok(),
        }
    )
    response = sites.client().request(
        "GET", "https://site.example/start", headers={"Authorization": "Bearer secret", "X-Api-Key": "key"}
    )
    assert sites.requests[1].headers["authorization"] == "Bearer secret"
    assert sites.requests[1].headers["x-api-key"] == "key"
    assert response.url == "https://site.example/next?page=2"


@pytest.mark.parametrize("status", [303, 302, 301])
def test_post_becomes_get_without_body(status: int) -> None:
    sites = Sites({"https://site.example/form": redirect(status, "/done"), "https://site.example/done": ok()})
    sites.client().request(
        "POST", "https://site.example/form", json={"a": 1}, headers={"Content-Type": "application/json"}
    )
    follow = sites.requests[1]
    assert follow.method == "GET"
    assert follow.content == b""
    assert "content-type" not in follow.headers
    assert "content-length" not in follow.headers


def test_307_keeps_method_and_body_but_not_the_token_across_origins() -> None:
    sites = Sites(
        {"https://site.example/tool": redirect(307, "https://other.example/tool"), "https://other.example/tool": ok()}
    )
    sites.client().request(
        "POST", "https://site.example/tool", json={"a": 1}, headers={"Authorization": "Bearer secret"}
    )
    follow = sites.requests[1]
    assert follow.method == "POST"
    assert json.loads(follow.content) == {"a": 1}
    assert follow.headers["content-type"] == "application/json"
    assert "authorization" not in follow.headers


def test_form_data_is_sent_form_encoded() -> None:
    sites = Sites({"https://site.example/token": ok({"access_token": "t"})})
    sites.client().request("POST", "https://site.example/token", data={"grant_type": "authorization_code", "code": "c"})
    request = sites.requests[0]
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.content == b"grant_type=authorization_code&code=c"


def test_redirect_without_location_is_returned_as_is() -> None:
    sites = Sites({"https://site.example/": lambda request: httpx.Response(302, content=b"moved?")})
    response = sites.client().request("GET", "https://site.example/")
    assert (response.status, response.content) == (302, b"moved?")


# --- size cap -----------------------------------------------------------------------------------

CHUNK = 65_536


class Stream:
    """A 10 MB body produced lazily; counts what was actually pulled."""

    def __init__(self, total: int = 10 * 1024 * 1024) -> None:
        self.total = total
        self.yielded = 0

    def __iter__(self) -> Iterator[bytes]:
        while self.yielded < self.total:
            self.yielded += CHUNK
            yield b"x" * CHUNK


def test_a_streamed_10mb_body_stops_near_the_cap() -> None:
    stream = Stream()
    sites = Sites({"https://site.example/big": lambda request: httpx.Response(200, content=iter(stream))})
    with pytest.raises(OutboundTooLarge):
        sites.client(max_bytes=100_000).request("GET", "https://site.example/big")
    assert stream.yielded <= 100_000 + CHUNK


def test_declared_content_length_over_the_cap_is_refused_unread() -> None:
    stream = Stream()
    declared = {"Content-Length": str(stream.total)}
    sites = Sites({"https://site.example/big": lambda r: httpx.Response(200, headers=declared, content=iter(stream))})
    with pytest.raises(OutboundTooLarge):
        sites.client().request("GET", "https://site.example/big")
    assert stream.yielded == 0


def test_head_may_declare_a_large_body() -> None:
    declared = {"Content-Length": str(10 * 1024 * 1024)}
    sites = Sites({"https://site.example/": lambda request: httpx.Response(200, headers=declared)})
    response = sites.client(max_bytes=1000).request("HEAD", "https://site.example/")
    assert (response.status, response.content) == (200, b"")


def test_per_request_cap_and_exact_fit() -> None:
    body = b"y" * 1000
    sites = Sites({"https://site.example/": lambda request: httpx.Response(200, content=body)})
    client = sites.client()
    assert client.request("GET", "https://site.example/", max_bytes=1000).content == body
    with pytest.raises(OutboundTooLarge):
        client.request("GET", "https://site.example/", max_bytes=999)


def test_a_gzip_bomb_stops_at_the_cap() -> None:
    bomb = gzip.compress(b"\0" * (10 * 1024 * 1024))
    assert len(bomb) < 100_000
    sites = Sites(
        {"https://site.example/": lambda r: httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=bomb)}
    )
    with pytest.raises(OutboundTooLarge):
        sites.client(max_bytes=100_000).request("GET", "https://site.example/")


def encoded(encoding: str, content: bytes) -> Route:
    return lambda request: httpx.Response(200, headers={"Content-Encoding": encoding}, content=content)


def test_compressed_bodies_are_decoded_and_checked() -> None:
    good = gzip.compress(b'{"ok": true}')
    sites = Sites(
        {
            "https://site.example/good": encoded("gzip", good),
            "https://site.example/cut": encoded("gzip", good[:-9]),
            "https://site.example/br": encoded("br", b"x"),
        }
    )
    client = sites.client()
    assert client.request("GET", "https://site.example/good").json() == {"ok": True}
    with pytest.raises(OutboundUnavailable, match="corrupt"):
        client.request("GET", "https://site.example/cut")
    with pytest.raises(OutboundUnavailable, match="encoding"):
        client.request("GET", "https://site.example/br")


# --- failures, timeouts, deadline ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (httpx.ConnectTimeout("connect timed out"), "did not answer in time"),
        (httpx.ReadTimeout("read timed out"), "did not answer in time"),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]"), "could not be reached"),
        (httpx.RemoteProtocolError("server disconnected"), "could not be reached"),
    ],
)
def test_transport_failures_are_unavailable(error: Exception, message: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    client = Sites({"https://site.example/": fail}).client()
    with pytest.raises(OutboundUnavailable, match=message) as caught:
        client.request("GET", "https://site.example/", headers={"Authorization": "Bearer secret"})
    assert "secret" not in str(caught.value) and "SSL" not in str(caught.value)


def test_a_timeout_while_streaming_the_body_is_unavailable() -> None:
    def body() -> Iterator[bytes]:
        yield b"{"
        raise httpx.ReadTimeout("read timed out")

    client = Sites({"https://site.example/": lambda request: httpx.Response(200, content=body())}).client()
    with pytest.raises(OutboundUnavailable, match="in time"):
        client.request("GET", "https://site.example/")


@pytest.mark.parametrize(
    "resolver",
    [FakeResolver(error=socket.gaierror(-2, "Name or service not known")), FakeResolver({"site.example": []})],
)
def test_dns_failure_is_unavailable(resolver: FakeResolver) -> None:
    client = GuardedClient(allow_loopback=False, resolver=resolver, transport=forbidden_transport())
    with pytest.raises(OutboundUnavailable, match="could not be resolved"):
        client.request("GET", "https://site.example/")
    with pytest.raises(OutboundUnavailable):
        client.check_url("https://site.example/")


def test_each_phase_gets_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbound, "_clock", lambda: 50.0)  # frozen: the whole budget is left
    sites = Sites({"https://site.example/": ok()})
    sites.client(timeout=7.0).request("GET", "https://site.example/")
    sites.client().request("GET", "https://site.example/", timeout=2.5)
    assert [r.extensions["timeout"] for r in sites.requests] == [
        {"connect": 7.0, "read": 7.0, "write": 7.0, "pool": 7.0},
        {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5},
    ]


def test_the_deadline_spans_all_hops(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(outbound, "_clock", lambda: now[0])

    def slow_redirect(request: httpx.Request) -> httpx.Response:
        now[0] += 4.0  # every hop takes 4 s of a 10 s budget
        number = int(request.url.path.removeprefix("/r"))
        return httpx.Response(302, headers={"Location": f"/r{number + 1}"})

    sites = Sites({f"https://site.example/r{i}": slow_redirect for i in range(5)})
    with pytest.raises(OutboundUnavailable, match="in time"):
        sites.client(timeout=10.0, max_redirects=5).request("GET", "https://site.example/r0")
    assert len(sites.requests) == 3  # at 0 s, 4 s and 8 s; at 12 s nothing is sent
    assert [r.extensions["timeout"]["read"] for r in sites.requests] == [10.0, 6.0, 2.0]


def test_the_deadline_also_bounds_a_slow_body(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(outbound, "_clock", lambda: now[0])

    def drip() -> Iterator[bytes]:
        for _ in range(100):
            now[0] += 1.0
            yield b"."

    client = Sites({"https://site.example/": lambda request: httpx.Response(200, content=drip())}).client(timeout=5.0)
    with pytest.raises(OutboundUnavailable, match="in time"):
        client.request("GET", "https://site.example/")


def test_one_keep_alive_pool_per_host_name_and_bounded() -> None:
    # Connections are pooled by IP; a pool per name keeps a TLS session verified for one name
    # from carrying requests for another name on the same IP.
    first = outbound._pooled_transport("a.example")
    assert outbound._pooled_transport("a.example") is first
    assert outbound._pooled_transport("b.example") is not first
    for i in range(outbound._MAX_POOLS + 5):
        outbound._pooled_transport(f"n{i}.example")
    assert len(outbound._POOLS) <= outbound._MAX_POOLS
    assert "a.example" not in outbound._POOLS


# --- response and errors ------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"{not json", b'"\xff"'])
def test_json_raises_value_error(content: bytes) -> None:
    response = OutboundResponse(200, httpx.Headers(), content, "https://site.example/")
    with pytest.raises(ValueError):
        response.json()


def test_errors_are_our_own() -> None:
    for error in (OutboundRefused, OutboundUnavailable, OutboundTooLarge, OutboundTooManyRedirects):
        assert issubclass(error, OutboundError)
        assert not issubclass(error, ConduitError)


def test_default_mode_follows_local_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbound, "get_settings", lambda: SimpleNamespace(local_mode=False))
    with pytest.raises(OutboundRefused):
        GuardedClient(resolver=FakeResolver({})).check_url("http://127.0.0.1:9/")
    monkeypatch.setattr(outbound, "get_settings", lambda: SimpleNamespace(local_mode=True))
    assert GuardedClient(resolver=FakeResolver({})).check_url("http://127.0.0.1:9/") == ["127.0.0.1"]


# --- local mode: a real loopback server ---------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/manifest")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"path": self.path, "host": self.headers["Host"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def loopback_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_local_mode_fetches_a_real_loopback_server(loopback_port: int) -> None:
    # Real transport, but only ever to 127.0.0.1; no resolver entries, so no DNS either.
    client = GuardedClient(allow_loopback=True, resolver=FakeResolver({}))
    response = client.request("GET", f"http://127.0.0.1:{loopback_port}/manifest")
    assert response.status == 200
    assert response.json() == {"path": "/manifest", "host": f"127.0.0.1:{loopback_port}"}

    followed = client.request("GET", f"http://localhost:{loopback_port}/redirect")
    assert followed.json() == {"path": "/manifest", "host": f"localhost:{loopback_port}"}
    assert followed.url == f"http://localhost:{loopback_port}/manifest"


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1/", "https://192.168.1.1", "https://[fc00::1]/", "http://private.example/"]
)
def test_local_mode_allows_only_loopback(url: str) -> None:
    client = GuardedClient(allow_loopback=True, resolver=FakeResolver(), transport=forbidden_transport())
    with pytest.raises(OutboundRefused):
        client.request("GET", url)


def test_without_local_mode_the_loopback_server_is_refused(loopback_port: int) -> None:
    client = GuardedClient(allow_loopback=False, resolver=FakeResolver({}), transport=forbidden_transport())
    for url in (f"http://127.0.0.1:{loopback_port}/manifest", f"https://127.0.0.1:{loopback_port}/manifest"):
        with pytest.raises(OutboundRefused):
            client.request("GET", url)


# --- a real TLS handshake on loopback: SNI and certificate use the name, the socket the IP ------


def _certificates(directory: Path, name: str) -> tuple[Path, Path]:
    """A CA (returned as a PEM path) and a server certificate+key for `name` only (no IP SAN)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        )
        if ca:
            usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        else:
            usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.add_extension(usage, critical=True).sign(signer, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Conduit test CA")])
    ca_cert = build("Conduit test CA", ca_key, ca_name, ca_key, ca=True)
    leaf_cert = build(name, leaf_key, ca_name, ca_key, ca=False)
    ca_path, server_path = directory / "ca.pem", directory / "server.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    server_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM) + key_pem)
    return ca_path, server_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str | None]]]:
    """An HTTPS server on 127.0.0.1 whose certificate names only site.example; records the SNI it sees."""
    ca_path, server_path = _certificates(tmp_path, "site.example")
    seen_sni: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_path)
    context.sni_callback = lambda sock, name, ctx: seen_sni.append(name)  # type: ignore[assignment,misc]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ca_path, seen_sni
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_tls_verifies_the_name_while_connecting_to_the_checked_ip(
    tls_server: tuple[int, Path, list[str | None]],
) -> None:
    port, ca_path, seen_sni = tls_server
    transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=ca_path))
    resolver = FakeResolver({"site.example": ["127.0.0.1"], "wrong.example": ["127.0.0.1"]})
    client = GuardedClient(allow_loopback=True, resolver=resolver, transport=transport)

    response = client.request("GET", f"https://site.example:{port}/manifest")
    assert response.json() == {"path": "/manifest", "host": f"site.example:{port}"}
    assert seen_sni == ["site.example"]

    # Same IP, but the certificate does not name wrong.example: verification must fail.
    with pytest.raises(OutboundUnavailable):
        client.request("GET", f"https://wrong.example:{port}/manifest")
    assert seen_sni[-1] == "wrong.example"
    transport.close()
