"""Schemathesis against the OpenAPI document the local stack serves: no request, however odd,
gets a server error. Its own stack with a high-limit tiers file, so the rate limits under test
elsewhere do not turn the run into a test of the limiter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shared.local.stack import LocalStack

from .conftest import ROOT

pytestmark = pytest.mark.stack


@pytest.fixture
def fuzz_stack(tmp_path, monkeypatch):
    tiers = json.loads((ROOT / "shared" / "tiers.json").read_text())
    tiers["unauthenticatedRequestsPerMinute"] = tiers["outgoingCallsPerMinutePerDomain"] = 1_000_000
    for tier in tiers["tiers"].values():
        tier["requestsPerMinute"] = 1_000_000
    tiers_file = tmp_path / "tiers.json"
    tiers_file.write_text(json.dumps(tiers))
    monkeypatch.setenv("TIERS_FILE", str(tiers_file))  # a knob, reaching the functions as with `make dev`
    stack = LocalStack(port=0, quiet=True).start().serve_in_background()
    yield stack
    stack.stop()


def test_no_request_gets_a_server_error(fuzz_stack):
    with httpx.Client(base_url=fuzz_stack.url, timeout=30) as client:
        session = client.post("/auth/register", json={"email": "fuzz@example.com", "password": "fuzz password"}).json()
        headers = {"Authorization": f"Bearer {session['accessToken']}"}
        assert client.post("/auth/accept-terms", json={}, headers=headers).status_code == 200
    result = subprocess.run(
        [
            Path(sys.executable).parent / "schemathesis",
            "run",
            f"{fuzz_stack.url}/openapi.json",
            "--header",
            f"Authorization: {headers['Authorization']}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            # Keep the token alive for the whole run.
            "--exclude-path-regex",
            "/auth/logout.*|/revoke-tokens",
            "--max-examples",
            "10",
            "--seed",
            "20261124",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
