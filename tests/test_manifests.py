"""Manifest parsing and tool naming (in-process; the vault tests fetch real manifests)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conduit.platform.errors import ConduitError
from conduit.vault.manifests import DISCOVERY, STANDARD_PATHS, manifest_candidates, oauth_client_id, parse_manifest, prefixed_names


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
    assert (manifest.call_shape, manifest.call_target) == ("named", "https://s.example/t")
    assert [t.name for t in manifest.tools] == ["a.b"]


@pytest.mark.parametrize(
    ("scopes", "expected"), [(["read", "write"], ["read", "write"]), ({"read": "Read", "admin": "All"}, ["read", "admin"]), (None, [])]
)
@pytest.mark.parametrize(
    ("clients", "client_id"),
    [
        (["conduit-abc"], "conduit-abc"),
        ([{"client_id": "xyz", "name": "Conduit"}], "xyz"),
        ({"claude-ai": "Claude AI", "cid-1": "Conduit"}, "cid-1"),
        ({"claude-ai": "Claude AI", "chatgpt": "ChatGPT"}, None),  # another product's client is never borrowed
        (None, "conduit"),
    ],
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
    assert oauth_client_id(manifest) == client_id


def test_loopback_http_only_in_local_mode():
    document = {"name": "S", "version": "1", "server": {"url": "http://127.0.0.1:8000"}, "tools": [tool()]}
    assert parse_manifest(document, Client(allow_loopback=True)).call_target == "http://127.0.0.1:8000"
    with pytest.raises(ConduitError) as raised:
        parse_manifest(document, Client(allow_loopback=False))
    assert raised.value.details == [{"field": "server.url", "message": "Only https:// URLs are allowed"}]


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConduitError) as raised:
        parse_manifest(
            {"name": "S", "version": "1", "server": {"url": "ftp://x"}, "tools": [tool("a", {"type": 5}), tool("b", {"type": "string"})]},
            Client(),
        )
    assert raised.value.code == "MANIFEST_INVALID"
    fields = sorted(d["field"] for d in raised.value.details)
    assert fields == ["server.url", "tools", "tools.0.input_schema.type", "tools.1.input_schema.type"]


def test_candidates():
    assert manifest_candidates("https://s.example") == [f"https://s.example{path}" for path in DISCOVERY]
    assert manifest_candidates("https://s.example/") == [f"https://s.example{path}" for path in DISCOVERY]
    assert manifest_candidates("https://s.example/m.json") == ["https://s.example/m.json"]
    query = "https://s.example/?rest_route=/goldt-webmcp-bridge/v1/manifest"
    assert manifest_candidates(query) == [query]  # a query: the manifest itself
    assert DISCOVERY[: len(STANDARD_PATHS)] == STANDARD_PATHS  # the format's own paths first
    assert len(set(DISCOVERY)) == len(DISCOVERY)


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


# --- real plugin documents and §11's tolerance ------------------------------------------------

CORPUS = Path("/work/shared/corpus/manifests")
PLACEHOLDER_ORIGINS = re.compile(r"https://(forum\.example\.com|blog\.example\.net|drupal\.example\.org|myapp\.example\.com|devcommunity\.example\.com)")


def corpus_document(name, origin="https://site.example"):
    """A corpus manifest with its placeholder origin replaced."""
    return json.loads(PLACEHOLDER_ORIGINS.sub(origin, (CORPUS / name).read_text()))


# (file, call shape, call target with the origin https://site.example, tool count)
CALL_TARGETS = {
    "xenforo-ai-connect-1.2.27.json": ("named", "https://site.example/api/aiconnect-tools", 5),
    "wordpress-webmcp-bridge-0.5.7.json": ("template", "https://site.example/wp-json/goldt-webmcp-bridge/v1/tools/{tool_name}", 7),
    "wordpress-webmcp-bridge-0.5.7-plain-permalinks.json": (
        "template", "https://site.example/?rest_route=/goldt-webmcp-bridge/v1/tools/{tool_name}", 7,
    ),
    "wordpress-ai-connect-0.1.0.json": ("template", "https://site.example/wp-json/ai-connect/v1/tools/{tool_name}", 5),
    "drupal-ai-connect-1.0.0.json": ("template", "https://site.example/api/ai-connect/v1/tools/{tool_name}", 7),
    "docs-example-adding-a-site.json": ("rest", "https://site.example/api/servio", 1),
    "docs-example-manifest-format.json": ("rest", "https://site.example/api/servio", 3),
}


def test_every_corpus_manifest_is_known_here():
    assert sorted(CALL_TARGETS) == sorted(path.name for path in CORPUS.glob("*.json"))


@pytest.mark.parametrize("name", sorted(CALL_TARGETS))
def test_corpus_manifests_parse_whole_with_the_plugins_call_target(name):
    manifest = parse_manifest(corpus_document(name), Client())
    shape, target, count = CALL_TARGETS[name]
    assert (manifest.call_shape, manifest.call_target, len(manifest.tools)) == (shape, target, count)
    assert manifest.warnings == ()
    for tool_ in manifest.tools:  # PHP's [] became {} where an object belongs
        assert isinstance(tool_.input_schema.get("properties", {}), dict)


def test_the_plugins_oauth_fields_are_read():
    xenforo = parse_manifest(corpus_document("xenforo-ai-connect-1.2.27.json"), Client())
    assert xenforo.redirect_uris == ("urn:ietf:wg:oauth:2.0:oob",)
    assert xenforo.registered_clients == (("claude-ai", "Claude AI"), ("chatgpt", "ChatGPT"))
    assert (xenforo.code_challenge_method, xenforo.scopes) == ("S256", ["read", "write", "delete", "admin"])
    drupal = parse_manifest(corpus_document("drupal-ai-connect-1.0.0.json"), Client())
    assert drupal.redirect_uris == ("http://localhost/callback", "urn:ietf:wg:oauth:2.0:oob")


def test_the_client_id_knob_overrides_the_manifest(monkeypatch):
    from conduit.platform.settings import get_settings

    manifest = parse_manifest(corpus_document("xenforo-ai-connect-1.2.27.json"), Client())
    monkeypatch.setenv("SITE_OAUTH_CLIENT_ID", "conduit-prod")
    get_settings.cache_clear()
    try:
        assert oauth_client_id(manifest) == "conduit-prod"
    finally:
        monkeypatch.delenv("SITE_OAUTH_CLIENT_ID")
        get_settings.cache_clear()
    assert oauth_client_id(manifest) is None


def minimal(**changes):
    document = {"name": "S", "version": "1", "server": {"url": "https://s.example"}, "tools": [tool("ok")]}
    document.update(changes)
    return document


def test_tolerance_as_the_plugins_write_json():
    document = minimal(
        version=2.5,
        auth={"type": "None"},
        tools=[
            {"name": "php", "description": "d", "input_schema": {"type": "object", "properties": []}},
            {"name": "mcp", "description": "d", "inputSchema": {"type": "object", "properties": {"a": {"type": "object", "properties": []}}}},
            {"name": "bare", "input_schema": []},
            {"name": "nested", "description": "", "input_schema": {"type": "object", "anyOf": [{"properties": []}], "$defs": []}},
        ],
    )
    manifest = parse_manifest(document, Client())
    assert (manifest.version, manifest.auth_type, manifest.warnings) == ("2.5", "none", ())
    schemas = {t.name: t.input_schema for t in manifest.tools}
    assert schemas["php"]["properties"] == {} and schemas["mcp"]["properties"]["a"]["properties"] == {}
    assert schemas["bare"] == {} and schemas["nested"] == {"type": "object", "anyOf": [{"properties": {}}], "$defs": {}}
    assert {t.name: t.description for t in manifest.tools}["bare"] == "bare"  # described by its name


def test_an_invalid_tool_is_left_out_with_a_warning():
    document = minimal(tools=[tool("ok"), tool("bad", {"type": "nope"}), {"name": 5}, "x", tool("ok")])
    manifest = parse_manifest(document, Client())
    assert [t.name for t in manifest.tools] == ["ok"]
    assert [w["tool"] for w in manifest.warnings] == ["bad", "#2", "#3", "ok"]
    assert all(w["message"].startswith("left out: ") for w in manifest.warnings)
    assert "appears more than once" in manifest.warnings[3]["message"]


def deep(levels):
    schema = {"type": "object"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


HOSTILE_TOOLS = {
    "deep": {"name": "deep", "description": "d", "input_schema": deep(200)},
    "infinite": {"name": "infinite", "description": "d", "input_schema": {"type": "object", "properties": {"n": {"maximum": float("inf")}}}},
    "huge": {"name": "huge", "description": "d", "input_schema": {"type": "object", "properties": {"n": {"maxLength": 10**400}}}},
    "remote_ref": {"name": "remote_ref", "description": "d", "input_schema": {"type": "object", "properties": {"n": {"$ref": "https://evil.example/s.json"}}}},
    "dangling_ref": {"name": "dangling_ref", "description": "d", "input_schema": {"type": "object", "properties": {"n": {"$ref": "#/$defs/none"}}}},
    "id": {"name": "id", "description": "d", "input_schema": {"$id": "https://evil.example/", "type": "object"}},
    "long": {"name": "x" * 5000, "description": "d", "input_schema": {"type": "object"}},
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TOOLS))
def test_hostile_tools_are_left_out_and_alone_refuse_the_manifest(name):
    manifest = parse_manifest(minimal(tools=[tool("ok"), HOSTILE_TOOLS[name]]), Client())
    assert [t.name for t in manifest.tools] == ["ok"] and len(manifest.warnings) == 1
    with pytest.raises(ConduitError) as raised:
        parse_manifest(minimal(tools=[HOSTILE_TOOLS[name]]), Client())
    assert raised.value.code == "MANIFEST_INVALID" and len(raised.value.details) >= 2


def test_a_local_ref_is_kept():
    schema = {"type": "object", "properties": {"n": {"$ref": "#/$defs/n"}}, "$defs": {"n": {"type": "integer"}}}
    assert parse_manifest(minimal(tools=[tool("r", schema)]), Client()).tools[0].input_schema == schema


def test_thousands_of_tools_keep_the_first_hundred():
    manifest = parse_manifest(minimal(tools=[tool(f"t{i}") for i in range(5000)]), Client())
    assert len(manifest.tools) == 100
    assert manifest.warnings == ({"tool": "*", "message": "only the first 100 tools are used; 4900 left out"},)


@pytest.mark.parametrize(
    "document",
    [
        minimal(description=deep(100)),
        minimal(version=float("nan")),
        minimal(extra=[10**100]),
        minimal(tools={"a": tool("a")}),
    ],
)
def test_a_hostile_manifest_outside_its_tools_is_refused(document):
    with pytest.raises(ConduitError) as raised:
        parse_manifest(document, Client())
    assert raised.value.code == "MANIFEST_INVALID"


@pytest.mark.parametrize("text", [b"[" * 100_000, b'{"a": NaN}', b'{"a": Infinity}', b"1" * 5000, b"\xff"])
def test_json_that_is_not_strict_or_too_deep_is_a_value_error(text):
    from conduit.platform import safe_json

    with pytest.raises(ValueError):
        safe_json.loads(text)
