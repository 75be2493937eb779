"""Shared fixtures. AWS is moto (in-process, or the local stack's emulator); no network beyond loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Before anything reads settings or creates a boto3 client.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "TABLE_NAME": "ConduitTable",
        "LOCAL_MODE": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Conduit",
        "POWERTOOLS_SERVICE_NAME": "conduit",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        # Knobs reach the local stack's functions through the environment, as with `make dev`.
        "ADMIN_EMAILS": "root@example.com",
        # Short enough for the deadline test, long enough that a loaded 2-core CI machine does
        # not turn an ordinary multi-call exchange into CHAT_TIMEOUT.
        "CHAT_TIMEOUT_SECONDS": "15",
        "RUN_TIMEOUT_SECONDS": "20",  # short, so the run-timeout test is quick
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

# Stripe is a fake on loopback (tests/stripe_server.py), started before anything reads
# settings, so no stack of any test (the fuzz run's included) can reach the real Stripe.
from tests.stripe_server import API_KEY as STRIPE_API_KEY  # noqa: E402
from tests.stripe_server import WEBHOOK_SECRET as STRIPE_WEBHOOK_SECRET  # noqa: E402
from tests.stripe_server import FakeStripe  # noqa: E402

FAKE_STRIPE = FakeStripe()
os.environ.update(
    {
        "STRIPE_SECRET_KEY": STRIPE_API_KEY,
        "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "STRIPE_API_BASE": FAKE_STRIPE.url,
        "STRIPE_TIER_PRICES": "pro=price_pro,harness=price_harness,team=price_team",
    }
)

# Model providers likewise: one loopback server speaks the OpenAI and Anthropic APIs for every
# stack of this process (tests queue answers per model id: tests/model_server.py).
from tests.model_server import ModelServer  # noqa: E402

FAKE_MODELS = ModelServer.start()
MODEL_KEYS = {"OPENAI_API_KEY": "sk-test-stack-openai", "ANTHROPIC_API_KEY": "sk-ant-test-stack"}
os.environ.update(
    {
        "OPENAI_BASE_URL": f"{FAKE_MODELS.url}/v1",
        "ANTHROPIC_BASE_URL": FAKE_MODELS.url,
        **MODEL_KEYS,
    }
)

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from conduit.platform import aws as aws_clients  # noqa: E402
from conduit.platform.settings import get_settings  # noqa: E402
from shared.local.emulator import create_resources, serialize_in_process_moto  # noqa: E402
from shared.local.stack import LocalStack  # noqa: E402
from shared.local.template import Template  # noqa: E402
from shared.local.workers import LocalLambdaContext  # noqa: E402

serialize_in_process_moto()


@pytest.fixture(scope="session")
def template() -> Template:
    return Template()


@pytest.fixture
def aws(template: Template) -> Iterator[None]:
    """moto in-process with the template's tables, fresh for each test."""
    get_settings.cache_clear()
    aws_clients.clear()
    with mock_aws():
        create_resources(boto3.client, template)
        yield
    aws_clients.clear()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def fake_models() -> ModelServer:
    """The OpenAI/Anthropic APIs on loopback, which the chat functions of every stack call."""
    return FAKE_MODELS


@pytest.fixture
def lambda_context() -> Any:
    return LocalLambdaContext("test", 512, 29, "test-request")


@pytest.fixture(scope="session")
def fake_stripe() -> FakeStripe:
    """Stripe's API on loopback, which every function of every stack in this process calls."""
    return FAKE_STRIPE


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The platform as `make dev` serves it, on an ephemeral loopback port."""
    stack = LocalStack(port=0, quiet=True).start().serve_in_background()
    yield stack
    stack.stop()


@pytest.fixture
def api(local_stack: LocalStack) -> Iterator[Any]:
    import httpx

    with httpx.Client(base_url=local_stack.url, timeout=30) as client:
        yield client


@pytest.fixture
def client(local_stack: LocalStack) -> Iterator[Any]:
    """An HTTP client with a loopback source address of its own, so per-IP limits never mix tests."""
    from tests.helpers import client_from_new_address

    with client_from_new_address(local_stack) as client:
        yield client


ADMIN = {"email": "root@example.com", "password": "correct horse battery"}  # in ADMIN_EMAILS above


@pytest.fixture
def admin(client: Any) -> dict[str, str]:
    """Headers of the admin, registered once per local stack. Its own account is put on the
    team tier, so bursts of admin calls in tests stay under its per-minute limit."""
    response = client.post("/auth/register", json=ADMIN)
    if response.status_code == 409:
        response = client.post("/auth/login", json=ADMIN)
    session = response.json()
    assert session["user"]["isAdmin"] is True
    headers = {"Authorization": f"Bearer {session['accessToken']}"}
    client.post("/auth/accept-terms", json={}, headers=headers)
    client.patch(f"/admin/accounts/{session['user']['id']}", json={"tier": "team"}, headers=headers)
    return headers
