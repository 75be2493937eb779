"""Issue 16, classes 2, 3 and 5: deep nesting, non-standard numbers, tampered cursors and odd
numbers are refused with a clear 4xx (or handled), change nothing, and never reach a 500."""

from __future__ import annotations

import base64
import re
import json

import pytest

from conduit.platform import safe_json

from conduit.vault import site_oauth

from conduit.billing import stripe_events
from conduit.platform.errors import ConduitError
from conduit.net.outbound import OutboundResponse
from conduit.repositories.base import decode_cursor, encode_cursor

from .helpers import assert_error, signed_up
from .stripe_server import event, payment_intent_object, signed

DEEP = "[" * 10_000 + "]" * 10_000  # 20 KB
DEEP_OBJECT = '{"a":' * 5_000 + "1" + "}" * 5_000


# --- in-process: the rules ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "text",
    [DEEP, DEEP_OBJECT, "[" * 65 + "]" * 65, "[NaN]", '{"n": Infinity}', "-Infinity", "1" * 5000, b"\xff\xfe{}", "{", ""],
)
def test_safe_json_refuses_with_a_decode_error(text):
    with pytest.raises(json.JSONDecodeError):
        safe_json.loads(text)


def test_safe_json_takes_what_is_json():
    assert safe_json.loads("[" * 64 + "]" * 64) is not None
    assert safe_json.loads(b'\xef\xbb\xbf{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert safe_json.loads("1e300") == 1e300  # finite: numbers are bounded where they are used


@pytest.mark.parametrize("content", [DEEP.encode(), b"[NaN]", b'{"a": 1e999}'.replace(b"1e999", b"Infinity")])
def test_a_fetched_body_too_deep_or_not_json_is_a_value_error(content):
    with pytest.raises(ValueError):
        OutboundResponse(200, None, content, "http://a.example").json()  # type: ignore[arg-type]


def cursor_of(plain) -> str:
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


GOOD_INDEX_KEY = {"PK": "AGENT#a", "SK": "AGENT#a", "GSI1PK": "AGENTS#acc", "GSI1SK": "2026-01-01"}


@pytest.mark.parametrize(
    "cursor",
    [
        cursor_of({"GSI1PK": "AGENTS#acc"}),  # no sort key (the example)
        cursor_of({k: v for k, v in GOOD_INDEX_KEY.items() if k != "GSI1SK"}),
        cursor_of({**GOOD_INDEX_KEY, "extra": "x"}),
        cursor_of({**GOOD_INDEX_KEY, "SK": 7}),
        cursor_of({**GOOD_INDEX_KEY, "SK": ""}),
        cursor_of({**GOOD_INDEX_KEY, "SK": {"S": "x"}}),
        cursor_of({**GOOD_INDEX_KEY, "GSI1PK": "AGENTS#other"}),
        cursor_of([GOOD_INDEX_KEY]),
        cursor_of(None),
        base64.urlsafe_b64encode(DEEP.encode()).decode(),
        "not base64 at all!",
        "A" * 5000,
    ],
)
def test_a_tampered_cursor_is_a_validation_error(cursor):
    with pytest.raises(ConduitError) as raised:
        decode_cursor(cursor, partition_attribute="GSI1PK", partition_value="AGENTS#acc",
                      key_attributes=("PK", "SK", "GSI1PK", "GSI1SK"), sort_attribute="GSI1SK")
    assert raised.value.code == "VALIDATION_ERROR" and raised.value.status == 400


def test_a_cursor_outside_the_sort_key_range_is_refused_and_a_real_one_is_taken():
    key = {"PK": "ACCOUNT#a", "SK": "SITE#s1"}
    args = {"partition_attribute": "PK", "partition_value": "ACCOUNT#a", "sort_attribute": "SK", "sort_prefix": "SITE#"}
    assert decode_cursor(encode_cursor(key, ("PK", "SK")), **args) == {"PK": {"S": "ACCOUNT#a"}, "SK": {"S": "SITE#s1"}}
    with pytest.raises(ConduitError):
        decode_cursor(cursor_of({"PK": "ACCOUNT#a", "SK": "MEMBER#x"}), **args)


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [(1e300, 366 * 24 * 3600), (10**400, 366 * 24 * 3600), (3600, 3600), (True, None), ("3600", None), (-5, None), (0, None), (None, None)],
)
def test_token_lifetimes_are_bounded(expires_in, expected, monkeypatch):
    monkeypatch.setattr(site_oauth.time, "time", lambda: 1_000_000)
    assert site_oauth._expires_at(expires_in) == (None if expected is None else 1_000_000 + expected)


@pytest.mark.parametrize("value", ["1" * 44, 10**44, "1_000", "1e3", True, "-5", "0", " 5", "²", None, "10000001"])
def test_odd_stripe_credit_amounts_are_not_amounts(value):
    assert stripe_events._positive_int(value) is None


def test_a_stripe_credit_amount_is_taken():
    assert stripe_events._positive_int("250") == 250 and stripe_events._positive_int(10_000_000) == 10_000_000


@pytest.mark.parametrize("body", [DEEP, '{"id": "evt_1", "object": "event", "created": NaN}'])
def test_a_signed_stripe_body_too_deep_or_non_standard_is_a_400(aws, body):
    body, headers = signed(body)
    with pytest.raises(ConduitError) as raised:
        stripe_events.handle(body, headers["Stripe-Signature"])
    assert (raised.value.code, raised.value.status) == ("VALIDATION_ERROR", 400)


# --- through the local stack -------------------------------------------------------------------

HOSTILE_BODIES = {
    "deep-array": DEEP,
    "deep-object": DEEP_OBJECT,
    "nan": '{"email": "a@example.com", "password": NaN}',
    "infinity": '{"title": "t", "ttlSeconds": Infinity}',
    "huge-int": '{"title": "t", "ttlSeconds": ' + "9" * 5000 + "}",
}


@pytest.mark.stack
@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
def test_hostile_bodies_are_400_on_every_kind_of_route(client, name):
    _, headers = signed_up(client)
    json_headers = {"Content-Type": "application/json"}
    body = HOSTILE_BODIES[name]
    for path, extra in (("/auth/login", {}), ("/auth/register", {}), ("/sessions", headers), ("/agents", headers)):
        response = client.post(path, content=body, headers={**json_headers, **extra})
        assert_error(response, 400, "VALIDATION_ERROR")
    assert client.get("/sessions", headers=headers).json()["items"] == []
    assert client.get("/agents", headers=headers).json()["items"] == []


@pytest.mark.stack
def test_true_is_not_an_integer_and_nothing_is_created(client):
    _, headers = signed_up(client)
    for body in ({"ttlSeconds": True}, {"ttlSeconds": 1.5}, {"ttlSeconds": "60"}, {"ttlSeconds": 10**30}):
        assert_error(client.post("/sessions", json=body, headers=headers), 400, "VALIDATION_ERROR")
    for body in ({"maxRounds": True}, {"maxRounds": "3"}, {"isActive": 1}):
        response = client.post("/agents", json={"name": "A", "systemPrompt": "p", **body}, headers=headers)
        assert_error(response, 400, "VALIDATION_ERROR")
    assert client.get("/sessions", headers=headers).json()["items"] == []
    assert client.get("/agents", headers=headers).json()["items"] == []


@pytest.mark.stack
def test_tampered_cursors_are_400_on_every_list(client):
    _, headers = signed_up(client)
    for path in ("/agents", "/sessions", "/vault/sites"):
        for cursor in (cursor_of({"GSI1PK": "x"}), cursor_of({"PK": "x"}), cursor_of({"PK": 1, "SK": 2}), base64.urlsafe_b64encode(DEEP.encode()).decode()):
            assert_error(client.get(path, params={"cursor": cursor}, headers=headers), 400, "VALIDATION_ERROR")


@pytest.mark.stack
def test_hostile_stripe_deliveries_are_400_or_ignored_and_change_nothing(client):
    account_id, headers = signed_up(client)
    before = client.get("/billing", headers=headers).json()
    body, signature = signed(DEEP)
    assert_error(client.post("/stripe/webhook", content=body, headers=signature), 400, "VALIDATION_ERROR")
    metadata = {"accountId": account_id, "credits": "1" * 44, "purpose": "credits"}
    intent = payment_intent_object({"amount": "500", "customer": "cus_x", "metadata": metadata})
    body, signature = signed(event("payment_intent.succeeded", intent))
    response = client.post("/stripe/webhook", content=body, headers=signature)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"].startswith("ignored")
    assert client.get("/billing", headers=headers).json() == before


@pytest.mark.stack
def test_hostile_webhook_payloads_are_refused_and_start_nothing(client, admin):
    account, headers = signed_up(client)
    assert client.patch(f"/admin/accounts/{account}", json={"tier": "pro"}, headers=admin).status_code == 200
    created = client.post("/agents", json={"name": "A", "systemPrompt": "p", "triggerType": "webhook"}, headers=headers)
    assert created.status_code == 201, created.text
    agent = created.json()
    secret = {"X-Webhook-Secret": agent["webhook"]["secret"], "Content-Type": "application/json"}
    for body in (DEEP, DEEP_OBJECT, '{"n": NaN}', '{"n": ' + "9" * 5000 + "}"):
        assert_error(client.post(agent["webhook"]["url"], content=body, headers=secret), 422, "WEBHOOK_PAYLOAD_INVALID")
    assert client.get(f"/agents/{agent['id']}/runs", headers=headers).json()["items"] == []


NON_STANDARD = [DEEP, DEEP_OBJECT, '{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}', '{"a": ' + "9" * 5000 + "}", "[" * 65 + "]" * 65]


@pytest.mark.stack
def test_every_route_of_the_openapi_document_answers_hostile_bodies_without_a_server_error(client):
    """A sweep over every operation (schemathesis does not generate these): deep nesting and
    non-standard numbers, signed in and not; never a 5xx, always the error body."""
    _, headers = signed_up(client)
    document = client.get("/openapi.json").json()
    swept = 0
    for path, operations in document["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in operations:
            if method not in ("post", "put", "patch", "delete"):
                continue
            for body in NON_STANDARD:
                for auth in ({}, headers):
                    response = client.request(method, concrete, content=body, headers={"Content-Type": "application/json", **auth})
                    assert response.status_code < 500, (method, path, body[:20], response.text)
                    if response.status_code >= 400:
                        assert {"error", "code", "statusCode"} <= set(response.json())
            swept += 1
    assert swept >= 20


@pytest.mark.parametrize("answer", [DEEP.encode(), b'{"n": NaN}', b'{"n": ' + b"9" * 5000 + b"}"])
def test_a_tool_result_too_deep_or_non_standard_is_a_tool_error(aws, answer):
    from conduit.identity import login as identity
    from conduit.vault import sites as vault
    from conduit.repositories.accounts import AccountsRepository
    from conduit.repositories.sites import SitesRepository
    from conduit.vault.tool_calls import call_tool

    from .sites import TestSite, rest_manifest

    account = AccountsRepository().get(identity.register("deep@example.com", "long password here", None).user.id)
    site = TestSite(manifest=rest_manifest, routes={("POST", "/tools/posts.list"): lambda *_: (200, answer)})
    try:
        stored = SitesRepository().get_site(account.account_id, vault.add_site(account, site.origin, "t", None)["id"])
        with pytest.raises(ConduitError) as raised:
            call_tool(stored, "posts.list", {"q": "x"})
        assert raised.value.code == "TOOL_EXECUTION_ERROR"
    finally:
        site.close()


def test_a_manifest_too_deep_to_parse_is_manifest_invalid(aws):
    from conduit.identity import login as identity
    from conduit.vault import sites as vault
    from conduit.repositories.accounts import AccountsRepository
    from conduit.repositories.sites import SitesRepository

    from .sites import TestSite

    account = AccountsRepository().get(identity.register("deepm@example.com", "long password here", None).user.id)
    site = TestSite(manifest=DEEP.encode())
    try:
        with pytest.raises(ConduitError) as raised:
            vault.add_site(account, site.origin, "t", None)
        assert raised.value.code == "MANIFEST_INVALID"
        assert SitesRepository().all_sites(account.account_id) == []
    finally:
        site.close()
