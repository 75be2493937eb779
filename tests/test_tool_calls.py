"""The tool-call function against real loopback sites (in-process; chat and runs use it)."""

from __future__ import annotations

import json

import pytest

from conduit.identity import login as identity

from conduit.vault import sites as vault
from conduit.platform.errors import ConduitError
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.sites import SitesRepository
from conduit.vault.tool_calls import call_tool

from .sites import TestSite, named_manifest, rest_manifest, tool


def echo(site, path, headers, body):
    return 200, {"path": path, "body": json.loads(body), "authorization": headers.get("authorization")}


@pytest.fixture
def account(aws):
    session = identity.register("tools@example.com", "long password", None)
    return AccountsRepository().get(session.user.id)


@pytest.fixture
def make_site(account):
    created = []

    def make(manifest=rest_manifest, token="site-token", **options):
        site = TestSite(manifest=manifest, **options)
        created.append(site)
        view = vault.add_site(account, site.origin, token, None)
        return site, SitesRepository().get_site(account.account_id, view["id"])

    yield make
    for site in created:
        site.close()


def assert_code(call, code):
    with pytest.raises(ConduitError) as raised:
        call()
    assert raised.value.code == code
    return raised.value


def test_documented_shape_gets_arguments_as_body_and_the_original_name(make_site):
    site, stored = make_site(routes={("POST", "/tools/posts.list"): echo})
    result = call_tool(stored, "posts.list", {"q": "hello"})
    assert result == {"path": "/tools/posts.list", "body": {"q": "hello"}, "authorization": "Bearer site-token"}
    prefixed = json.loads(stored["toolsJson"])[1]["prefixedName"]
    assert call_tool(stored, prefixed, {"q": "again"})["body"] == {"q": "again"}
    assert SitesRepository().get_site(stored["accountId"], stored["siteId"])["lastUsedAt"]


def test_cms_shape_gets_name_and_arguments(make_site):
    site, stored = make_site(manifest=named_manifest, routes={("POST", "/wp-json/servio/v1/tools"): echo})
    result = call_tool(stored, "xenforo.searchThreads", {"q": "x"})
    assert result["body"] == {"name": "xenforo.searchThreads", "arguments": {"q": "x"}}


def test_arguments_failing_the_schema_are_refused_before_any_request(make_site):
    schema_tool = tool("search", q={"type": "string", "minLength": 2})
    site, stored = make_site(manifest=lambda s: rest_manifest(s, tools=[schema_tool]), routes={("POST", "/tools/search"): echo})
    sent_before = len(site.requests)
    error = assert_code(lambda: call_tool(stored, "search", {"q": 5}), "VALIDATION_ERROR")
    assert error.details == [{"field": "arguments.q", "message": "5 is not of type 'string'"}]
    assert len(site.requests) == sent_before
    assert_code(lambda: call_tool(stored, "nope", {}), "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (lambda s, p, h, b: (500, {"error": "boom"}), "TOOL_EXECUTION_ERROR"),
        (lambda s, p, h, b: (404, {}), "TOOL_EXECUTION_ERROR"),
        (lambda s, p, h, b: (200, b"<html>"), "TOOL_EXECUTION_ERROR"),
        (lambda s, p, h, b: (200, b'"' + b"x" * (2 * 1024 * 1024) + b'"'), "TOOL_EXECUTION_ERROR"),
    ],
)
def test_failures_are_classified(make_site, answer, code):
    site, stored = make_site(routes={("POST", "/tools/search"): answer})
    assert_code(lambda: call_tool(stored, "search", {"q": "x"}), code)


def test_an_unreachable_site_is_site_unavailable(make_site):
    site, stored = make_site()
    site.close()
    assert_code(lambda: call_tool(stored, "search", {"q": "x"}), "SITE_UNAVAILABLE")


def test_a_site_stored_with_the_old_call_shape_name_still_works(make_site):
    """Sites stored before the rename kept `callShape: "mcp"` for the {"name", "arguments"} shape."""
    site, stored = make_site(manifest=named_manifest, routes={("POST", "/wp-json/servio/v1/tools"): echo})
    assert stored["callShape"] == "named"
    SitesRepository().update(stored["accountId"], stored["siteId"], {"callShape": "mcp"})
    old = SitesRepository().get_site(stored["accountId"], stored["siteId"])
    assert call_tool(old, "xenforo.searchThreads", {"q": "x"})["body"] == {"name": "xenforo.searchThreads", "arguments": {"q": "x"}}


def test_a_site_without_auth_gets_no_token(make_site):
    site, stored = make_site(manifest=lambda s: rest_manifest(s, auth={"type": "none"}), routes={("POST", "/tools/search"): echo})
    assert call_tool(stored, "search", {"q": "x"})["authorization"] is None
