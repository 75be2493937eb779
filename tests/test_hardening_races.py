"""Issue 16, class 4: a resource deleted (or re-added) during use answers what happened, never a
500 and never bookkeeping in place of the outcome. In-process against moto and loopback sites."""

from __future__ import annotations

import json

import pytest

from conduit.chat import exchange as chat

from conduit.identity import login as identity

from conduit.chat import sessions

from conduit.vault import sites as vault
from conduit.platform.errors import ConduitError
from conduit.platform.ids import iso, utc_now
from conduit.repositories import workspaces as workspaces_repository
from conduit.repositories.accounts import AccountsRepository
from conduit.repositories.base import ConditionsFailed
from conduit.repositories.sessions import SessionsRepository
from conduit.repositories.sites import SitesRepository
from conduit.repositories.workspaces import WorkspacesRepository, member_item
from conduit.vault.tool_calls import call_tool

from .sites import TestSite, rest_manifest


@pytest.fixture
def account(aws):
    session = identity.register("races@example.com", "long password here", None)
    return AccountsRepository().get(session.user.id)


def test_a_session_deleted_mid_chat_is_session_not_found_and_saves_nothing(account, monkeypatch):
    session = sessions.create_session(account, title=None, model=None, site_ids=None, allow=None, deny=None, ttl_seconds=3600)
    token = session["sessionToken"]
    real_tools = chat.available_tools

    def tools_then_delete(*args, **kwargs):  # runs after the session was found, before the answer is saved
        found = real_tools(*args, **kwargs)
        SessionsRepository().delete(token)
        return found

    monkeypatch.setattr(chat, "available_tools", tools_then_delete)
    with pytest.raises(ConduitError) as raised:
        chat.chat(chat.new_exchange(account), token, "hello", None)
    assert (raised.value.code, raised.value.status) == ("SESSION_NOT_FOUND", 404)
    assert SessionsRepository().find(token) is None and SessionsRepository().all_messages(token) == []


def test_a_site_deleted_while_its_tool_runs_keeps_the_tools_result(account):
    def delete_then_answer(site, path, headers, body):
        SitesRepository().delete(account.account_id, stored["siteId"])
        return 200, {"done": json.loads(body)}

    site = TestSite(manifest=rest_manifest, routes={("POST", "/tools/posts.list"): delete_then_answer})
    try:
        view = vault.add_site(account, site.origin, "site-token", None)
        stored = SitesRepository().get_site(account.account_id, view["id"])
        assert call_tool(stored, "posts.list", {"q": "x"}) == {"done": {"q": "x"}}
        with pytest.raises(ConduitError) as raised:
            SitesRepository().get_site(account.account_id, stored["siteId"])
        assert raised.value.code == "NOT_FOUND"
    finally:
        site.close()


def test_a_site_deleted_while_its_tool_fails_keeps_the_tools_error(account):
    def delete_then_fail(site, path, headers, body):
        SitesRepository().delete(account.account_id, stored["siteId"])
        return 500, {"error": "broken"}

    site = TestSite(manifest=rest_manifest, routes={("POST", "/tools/posts.list"): delete_then_fail})
    try:
        view = vault.add_site(account, site.origin, "site-token", None)
        stored = SitesRepository().get_site(account.account_id, view["id"])
        with pytest.raises(ConduitError) as raised:
            call_tool(stored, "posts.list", {"q": "x"})
        assert raised.value.code == "TOOL_EXECUTION_ERROR"
    finally:
        site.close()


@pytest.fixture
def workspace(account):
    repository = WorkspacesRepository()
    workspace_id = "ws_races"
    items = AccountsRepository().new_account_items(
        workspace_id, kind="workspace", owner_id=account.account_id, tier="team", signup_credits=0, now=utc_now(), name="W"
    )
    repository.create(items, member_item(workspace_id, account.account_id, "o@example.com", "owner", iso(utc_now())), None)
    assert repository.add_member(member_item(workspace_id, "usr_plain", "p@example.com", "member", iso(utc_now())), None)
    return workspace_id


def code_of(call) -> str:
    with pytest.raises(ConduitError) as raised:
        call()
    return raised.value.code


def test_member_changes_answer_what_happened(workspace, account):
    repository = WorkspacesRepository()
    assert code_of(lambda: repository.remove_member(workspace, account.account_id)) == "ROLE_CHANGE_FORBIDDEN"
    assert code_of(lambda: repository.set_role(workspace, account.account_id, "admin")) == "ROLE_CHANGE_FORBIDDEN"
    assert code_of(lambda: repository.remove_member(workspace, "usr_ghost")) == "MEMBER_NOT_FOUND"
    assert code_of(lambda: repository.set_role(workspace, "usr_ghost", "admin")) == "MEMBER_NOT_FOUND"


def test_a_plain_member_removed_and_re_added_during_a_change_is_not_role_change_forbidden(workspace, monkeypatch):
    repository = WorkspacesRepository()
    repository.remove_member(workspace, "usr_plain")
    real_delete = workspaces_repository.delete_counted

    def failed_then_re_added(*args, **kwargs):
        # The delete found no member; before the failure is explained, another request adds it back.
        try:
            real_delete(*args, **kwargs)
        except ConditionsFailed:
            repository.add_member(member_item(workspace, "usr_plain", "p@example.com", "member", iso(utc_now())), None)
            raise
        raise AssertionError("the member was expected to be gone")

    monkeypatch.setattr(workspaces_repository, "delete_counted", failed_then_re_added)
    assert code_of(lambda: repository.remove_member(workspace, "usr_plain")) == "MEMBER_NOT_FOUND"
    assert repository.get_member(workspace, "usr_plain")["role"] == "member"  # the re-add stands
