"""Helpers for tests that talk to the local stack over HTTP."""

from __future__ import annotations

import itertools
import time

import httpx

_source_addresses = itertools.count(2)


def client_from_new_address(stack) -> httpx.Client:
    """A client whose TCP peer address (the API's sourceIp) no other test uses."""
    number = next(_source_addresses)
    address = f"127.0.{number // 250}.{number % 250 + 2}"
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=stack.url, transport=transport, timeout=60)


def register(client, email=None, password="correct horse battery", name="Ada"):
    email = email or f"user{time.monotonic_ns()}@example.com"
    response = client.post("/auth/register", json={"email": email, "password": password, "name": name})
    assert response.status_code == 201, response.text
    return response.json()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["statusCode"] == status and body["error"]
    assert set(body) <= {"error", "code", "statusCode", "details"}


def wait_for_room_in_the_minute(seconds_needed=25):
    """Fixed rate windows start on the minute: a burst must not straddle two windows."""
    remaining = 60 - time.time() % 60
    if remaining < seconds_needed:
        time.sleep(remaining + 0.5)


def signed_up(client):
    """A registered user who accepted the terms: (user id, auth headers)."""
    session = register(client)
    headers = bearer(session["accessToken"])
    client.post("/auth/accept-terms", json={}, headers=headers)
    return session["user"]["id"], headers


def open_account(signup_credits: int = 100) -> str:
    """A personal account written straight to the table (in-process moto, the `aws` fixture)."""
    import uuid
    from datetime import UTC, datetime

    from conduit.repositories.accounts import AccountsRepository
    from conduit.repositories.base import write_transaction

    accounts = AccountsRepository()
    account_id = f"usr_{uuid.uuid4().hex[:12]}"
    items = accounts.new_account_items(
        account_id, kind="personal", owner_id=account_id, signup_credits=signup_credits, now=datetime.now(UTC)
    )
    write_transaction(accounts.client, items)
    return account_id
