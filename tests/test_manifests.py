"""Manifest parsing and tool naming (in-process; the vault tests fetch real manifests)."""

from __future__ import annotations

import re

import pytest

from conduit.errors import ConduitError
from conduit.manifests import MANIFEST_PATHS, manifest_candidates, parse_manifest, prefixed_names


class Client:
    """Stands in for GuardedClient where only its local-mode flag matters."""

    def __init__(self, allow_loopback=False):
        self.allow_loopback = allow_loopback


def tool(name="search", schema=None):
    return {"name": name, "description": "d", "input_schema": schema if schema is not None else {"type": "object"}}


def test_documented_shape():
    manifest = parse_manifest(
        {"name": "S", "version": "1", "server": {"url": "https://s.example/api"}, "tools": [tool()], "brief": {"x": 1}},
        Client(),
    )
    assert (manifest.call_shape, manifest.call_target, manifest.auth_type) == ("rest", "https://s.example/api", "bearer")
    assert [t.name for t in manifest.tools] == ["search"]


def test_cms_shape_with_tools_under_usage():
    manifest = parse_manifest(
        {"name": "S", "version": "1", "usage": {"tools_endpoint": "https://s.example/t", "body_format": "mcp", "tools": [tool("a.b")]}},
        Client(),
    )
    assert (manifest.call_shape, manifest.call_target) == ("mcp", "https://s.example/t")
    assert [t.name for t in manifest.tools] == ["a.b"]


@pytest.mark.parametrize(
    ("scopes", "expected"), [(["read", "write"], ["read", "write"]), ({"read": "Read", "admin": "All"}, ["read", "admin"]), (None, [])]
)
@pytest.mark.parametrize(
    ("clients", "client_id"),
    [(["abc"], "abc"), ([{"client_id": "xyz", "name": "x"}], "xyz"), ({"cid-1": {"name": "x"}}, "cid-1"), (None, None)],
)
def test_oauth2_scopes_and_registered_clients(scopes, expected, clients, client_id):
    auth = {
        "type": "oauth2",
        "authorization_url": "https://s.example/authorize",
        "token_url": "https://s.example/token",
        "scopes": scopes,
        "registered_clients": clients,
    }
    manifest = parse_manifest({"name": "S", "version": "1", "server": {"url": "https://s.example"}, "auth": auth, "tools": [tool()]}, Client())
    assert manifest.scopes == expected
    assert manifest.client_id == client_id


def test_loopback_http_only_in_local_mode():
    document = {"name": "S", "version": "1", "server": {"url": "http://127.0.0.1:8000"}, "tools": [tool()]}
    assert parse_manifest(document, Client(allow_loopback=True)).call_target == "http://127.0.0.1:8000"
    with pytest.raises(ConduitError) as raised:
        parse_manifest(document, Client(allow_loopback=False))
    assert raised.value.details == [{"field": "server.url", "message": "must be an absolute https:// URL"}]


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConduitError) as raised:
        parse_manifest(
            {"name": "S", "version": "1", "server": {"url": "ftp://x"}, "tools": [tool("a", {"type": 5}), tool("b", {"type": "string"})]},
            Client(),
        )
    assert raised.value.code == "MANIFEST_INVALID"
    assert sorted(d["field"] for d in raised.value.details) == ["server.url", "tools.0.input_schema.type", "tools.1.input_schema.type"]


def test_candidates():
    assert manifest_candidates("https://s.example") == [f"https://s.example{path}" for path in MANIFEST_PATHS]
    assert manifest_candidates("https://s.example/") == [f"https://s.example{path}" for path in MANIFEST_PATHS]
    assert manifest_candidates("https://s.example/m.json") == ["https://s.example/m.json"]


def test_prefixed_names_follow_the_contract():
    names = prefixed_names("example.com", "site_1", ["xenforo.searchThreads", "search"])
    assert names == {"xenforo.searchThreads": "example_com_xenforo_searchThreads", "search": "example_com_search"}
    assert prefixed_names("my-site.example.org", "s", ["go"]) == {"go": "my_site_example_org_go"}


def test_unsafe_characters_collisions_and_overflow_get_a_stable_suffix():
    names = prefixed_names("example.com", "site_1", ["a.b", "a_b", "ünï cødé", "x" * 80])
    for name in names.values():
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name), name
    assert names["a.b"] != names["a_b"]  # both would be example_com_a_b: both get their own suffix
    assert names["x" * 80].startswith("example_com_xxx") and len(names["x" * 80]) == 64
    again = prefixed_names("example.com", "site_1", ["x" * 80, "a_b", "a.b", "zzz"])
    assert again["a.b"] == names["a.b"] and again["x" * 80] == names["x" * 80]  # stable
    assert prefixed_names("example.com", "site_2", ["x" * 80])["x" * 80] != names["x" * 80]  # derived from (site, tool)
