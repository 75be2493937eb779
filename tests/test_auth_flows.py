"""Authentication through the local stack (API.md §2 and the rate limits of §9)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from .helpers import assert_error, bearer, client_from_new_address, register, wait_for_room_in_the_minute

pytestmark = pytest.mark.stack
def signing_key(stack) -> str:
    return stack.emulator.client("secretsmanager").get_secret_value(SecretId="JwtSigningSecret")["SecretString"]


def forge(stack, **overrides):
    now = datetime.now(UTC)
    claims = {
        "sub": "usr_x", "sid": "s", "iat": now, "exp": now + timedelta(minutes=5), "iss": "conduit", "aud": "conduit-api",
    }
    claims.update(overrides.pop("claims", {}))
    key = overrides.pop("key", None) or signing_key(stack)
    return jwt.encode(claims, key, algorithm=overrides.pop("algorithm", "HS256"))


def test_register_returns_user_tokens_and_account(client):
    body = register(client, email="Grace@Example.com")
    assert set(body) == {"user", "accessToken", "refreshToken", "expiresIn"}
    assert body["user"]["email"] == "grace@example.com"
    assert body["user"]["id"].startswith("usr_")
    assert body["expiresIn"] == 900
    me = client.get("/auth/me", headers=bearer(body["accessToken"]))
    assert me.status_code == 200
    account = me.json()["account"]
    assert account["id"] == body["user"]["id"]
    assert account["tier"] == "free" and account["credits"] > 0 and account["subscriptionStatus"] == "none"
    assert me.json()["termsAccepted"] is False


def test_register_twice_is_email_in_use(client):
    register(client, email="twice@example.com")
    response = client.post("/auth/register", json={"email": "TWICE@example.com", "password": "another password"})
    assert_error(response, 409, "EMAIL_IN_USE")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "password": "long enough"}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com"}, "password"),
        ({"email": "a@example.com", "password": "x" * 300}, "password"),
        ({"email": "a@example.com", "password": "long enough", "admin": True}, "admin"),
    ],
)
def test_register_bad_input_names_the_field(client, payload, field):
    response = client.post("/auth/register", json=payload)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert field in [detail["field"] for detail in response.json()["details"]]


def test_login_failures_are_indistinguishable(client):
    register(client, email="known@example.com", password="the right password")
    wrong_password = client.post("/auth/login", json={"email": "known@example.com", "password": "wrong password"})
    unknown_email = client.post("/auth/login", json={"email": "nobody@example.com", "password": "wrong password"})
    assert_error(wrong_password, 401, "UNAUTHORIZED")
    assert wrong_password.json() == unknown_email.json()
    ok = client.post("/auth/login", json={"email": "KNOWN@example.com", "password": "the right password"})
    assert ok.status_code == 200 and ok.json()["accessToken"]


def test_each_401_has_its_own_code(client, local_stack):
    session = register(client)
    assert_error(client.get("/auth/me"), 401, "UNAUTHORIZED")
    for header in ("Basic dXNlcjpwdw==", "Bearer", "Bearer not.a.jwt", "Bearer " + "a" * 5000):
        assert_error(client.get("/auth/me", headers={"Authorization": header}), 401, "INVALID_TOKEN")
    user_claims = {"sub": session["user"]["id"]}
    cases = {
        "wrong key": forge(local_stack, claims=user_claims, key="another key" * 4),
        "alg none": jwt.encode({**user_claims, "sid": "s", "iss": "conduit", "aud": "conduit-api"}, None, algorithm="none"),
        "HS512": forge(local_stack, claims=user_claims, algorithm="HS512"),
        "wrong issuer": forge(local_stack, claims={**user_claims, "iss": "someone-else"}),
        "wrong audience": forge(local_stack, claims={**user_claims, "aud": "other-api"}),
        "no sid": jwt.encode({"sub": "u", "iat": 1, "exp": 9999999999, "iss": "conduit", "aud": "conduit-api"}, signing_key(local_stack), algorithm="HS256"),
    }
    for name, token in cases.items():
        response = client.get("/auth/me", headers=bearer(token))
        assert_error(response, 401, "INVALID_TOKEN")
        assert signing_key(local_stack) not in response.text, name
    tampered = session["accessToken"][:-4] + ("AAAA" if not session["accessToken"].endswith("AAAA") else "BBBB")
    assert_error(client.get("/auth/me", headers=bearer(tampered)), 401, "INVALID_TOKEN")
    past = datetime.now(UTC) - timedelta(hours=1)
    expired = forge(local_stack, claims={**user_claims, "iat": past, "exp": past + timedelta(minutes=1)})
    assert_error(client.get("/auth/me", headers=bearer(expired)), 401, "TOKEN_EXPIRED")


def test_refresh_rotates_and_reuse_revokes_the_login(client):
    first = register(client)
    second = client.post("/auth/refresh", json={"refreshToken": first["refreshToken"]})
    assert second.status_code == 200
    second = second.json()
    assert second["refreshToken"] != first["refreshToken"]
    assert client.get("/auth/me", headers=bearer(second["accessToken"])).status_code == 200
    # The spent token is presented again: the whole login is revoked.
    assert_error(client.post("/auth/refresh", json={"refreshToken": first["refreshToken"]}), 401, "TOKEN_REVOKED")
    assert_error(client.post("/auth/refresh", json={"refreshToken": second["refreshToken"]}), 401, "TOKEN_REVOKED")
    assert_error(client.get("/auth/me", headers=bearer(second["accessToken"])), 401, "TOKEN_REVOKED")
    assert_error(client.post("/auth/refresh", json={"refreshToken": "rt_unknown"}), 401, "INVALID_TOKEN")


def test_logout_revokes_only_this_login(client):
    email = f"multi{time.monotonic_ns()}@example.com"
    laptop = register(client, email=email)
    phone = client.post("/auth/login", json={"email": email, "password": "correct horse battery"}).json()
    assert client.post("/auth/logout", headers=bearer(laptop["accessToken"])).status_code == 204
    assert_error(client.get("/auth/me", headers=bearer(laptop["accessToken"])), 401, "TOKEN_REVOKED")
    assert_error(client.post("/auth/refresh", json={"refreshToken": laptop["refreshToken"]}), 401, "TOKEN_REVOKED")
    assert client.get("/auth/me", headers=bearer(phone["accessToken"])).status_code == 200


def test_logout_all_revokes_every_login_on_the_next_request(client):
    email = f"all{time.monotonic_ns()}@example.com"
    laptop = register(client, email=email)
    phone = client.post("/auth/login", json={"email": email, "password": "correct horse battery"}).json()
    assert client.post("/auth/logout-all", headers=bearer(phone["accessToken"])).status_code == 204
    for session in (laptop, phone):
        assert_error(client.get("/auth/me", headers=bearer(session["accessToken"])), 401, "TOKEN_REVOKED")
        assert_error(client.post("/auth/refresh", json={"refreshToken": session["refreshToken"]}), 401, "TOKEN_REVOKED")
    again = client.post("/auth/login", json={"email": email, "password": "correct horse battery"}).json()
    assert client.get("/auth/me", headers=bearer(again["accessToken"])).status_code == 200


def test_accept_terms(client):
    session = register(client)
    headers = bearer(session["accessToken"])
    assert_error(client.post("/auth/accept-terms", json={"version": "1999-01-01"}, headers=headers), 400, "VALIDATION_ERROR")
    accepted = client.post("/auth/accept-terms", json={}, headers=headers)
    assert accepted.status_code == 200 and accepted.json()["termsAccepted"] is True
    assert client.get("/auth/me", headers=headers).json()["termsAccepted"] is True


def test_authenticated_responses_carry_rate_limit_headers(client):
    session = register(client)
    response = client.get("/auth/me", headers=bearer(session["accessToken"]))
    limit = int(response.headers["X-RateLimit-Limit"])
    assert limit == 60  # the free tier's requestsPerMinute
    assert int(response.headers["X-RateLimit-Remaining"]) == limit - 1
    assert int(response.headers["X-RateLimit-Reset"]) > time.time()


def test_account_limit_admits_exactly_the_limit_under_parallel_requests(client, local_stack):
    session = register(client)
    wait_for_room_in_the_minute()
    headers = bearer(session["accessToken"])

    def me(_):
        return httpx.get(local_stack.url + "/auth/me", headers=headers, timeout=60)

    with ThreadPoolExecutor(max_workers=12) as executor:
        responses = list(executor.map(me, range(75)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) == 60 and statuses.count(429) == 15
    refused = next(response for response in responses if response.status_code == 429)
    assert_error(refused, 429, "RATE_LIMITED")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_unauthenticated_auth_routes_are_limited_per_client_ip(local_stack):
    wait_for_room_in_the_minute()
    with client_from_new_address(local_stack) as client, client_from_new_address(local_stack) as other:
        statuses = [
            client.post("/auth/login", json={"email": "x@example.com", "password": "whatever"}).status_code
            for _ in range(31)
        ]
        assert statuses[:30] == [401] * 30
        assert statuses[30] == 429
        refused = client.post("/auth/login", json={"email": "x@example.com", "password": "whatever"})
        assert_error(refused, 429, "RATE_LIMITED")
        assert int(refused.headers["Retry-After"]) >= 1
        # Another client address has its own window.
        assert other.post("/auth/login", json={"email": "x@example.com", "password": "whatever"}).status_code == 401
