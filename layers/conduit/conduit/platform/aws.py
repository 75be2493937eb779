"""The one place AWS clients are made (the adapter between our code and boto3).

Each client is created on first use rather than at import, so tests can start moto first and a
function pays for the clients it uses only; cached, so a warm Lambda reuses one client and its
connection pool. `clear()` forgets them all (tests that start a fresh moto).
boto3 is imported here, on first use (modules that never make a client do not load it), and
nowhere else in the layer but for the DynamoDB type serializer (an import-linter contract says so).
"""

from __future__ import annotations

from functools import cache
from typing import Any


def _client(service: str, **options: Any) -> Any:
    import boto3

    client = boto3.client(service, **options)
    # botocore builds a client's modeled exception classes on first use of `client.exceptions`,
    # without a lock: two threads' first uses can each build a set, and an error raised as one
    # set's class then escapes an `except client.exceptions.X` that reads the other (seen as a
    # TransactionCanceledException escaping write_transaction). Built here, before any caller has it.
    client.exceptions  # noqa: B018
    return client


@cache
def dynamodb_client() -> Any:
    return _client("dynamodb")


@cache
def kms_client() -> Any:
    return _client("kms")


@cache
def stepfunctions_client() -> Any:
    return _client("stepfunctions")


@cache
def scheduler_client() -> Any:
    return _client("scheduler")


@cache
def lambda_client() -> Any:
    return _client("lambda")


@cache
def bedrock_runtime_client() -> Any:
    from botocore.config import Config

    # The chat deadline is checked around the call; these bound a hung connection. Throttles and
    # 5xx are retried by BedrockModel (API.md §14: at most twice, never past the exchange's deadline,
    # which botocore's own retries know nothing of), so botocore makes one attempt.
    config = Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 1})
    return _client("bedrock-runtime", config=config)


def clear() -> None:
    """Forget every client made so far (the next use makes a new one)."""
    for client in (
        dynamodb_client,
        kms_client,
        stepfunctions_client,
        scheduler_client,
        lambda_client,
        bedrock_runtime_client,
    ):
        client.cache_clear()
