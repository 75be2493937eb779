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
