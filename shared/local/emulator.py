"""AWS emulated by moto, one request at a time.

moto's backends are not thread-safe: two conditional writes handled in
parallel can both pass their condition. Every call into moto therefore runs
under one lock, which makes each emulated request atomic as it is in AWS:
- `Emulator` serves moto on a loopback port for the local stack's function
  processes (their boto3 clients use it through AWS_ENDPOINT_URL);
- `serialize_in_process_moto()` gives tests that call moto in-process
  (`mock_aws`) from several threads the same guarantee.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import boto3

from shared.local.template import LOCAL_REGION, Template

EMULATOR_LOCK = threading.RLock()

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": LOCAL_REGION,
    "AWS_REGION": LOCAL_REGION,
}


def _serialized(app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
    def serialized_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with EMULATOR_LOCK:
            # Consume the whole response under the lock: moto may compute lazily.
            return list(app(environ, start_response))

    return serialized_app


class Emulator:
    """moto's server app on 127.0.0.1, every request under EMULATOR_LOCK."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = _serialized(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", self._port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=LOCAL_REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_resources(self, template: Template) -> None:
        create_tables(self.client("dynamodb"), template)


def create_tables(dynamodb: Any, template: Template) -> None:
    """Create every table of template.yaml, named by logical id, with its key schema and indexes."""
    for name, props in template.tables().items():
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if props.get("GlobalSecondaryIndexes"):
            request["GlobalSecondaryIndexes"] = [
                {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
                for index in props["GlobalSecondaryIndexes"]
            ]
        dynamodb.create_table(**request)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )


_patched = False


def serialize_in_process_moto() -> None:
    """Put moto's in-process request dispatch (used by mock_aws) under EMULATOR_LOCK. Idempotent."""
    global _patched
    if _patched:
        return
    from moto.core.botocore_stubber import BotocoreStubber

    unlocked = BotocoreStubber.process_request

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        with EMULATOR_LOCK:
            return unlocked(self, request)

    BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
    _patched = True
