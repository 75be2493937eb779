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

import logging
import multiprocessing
import secrets
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


def _serve(connection: Any, port: int) -> None:
    """The emulator process: moto's server app, every request under EMULATOR_LOCK."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per emulated AWS call
    app = _serialized(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    connection.send(server.server_address[1])
    server.serve_forever()


class Emulator:
    """moto's server on 127.0.0.1, in a process of its own.

    Its own process because moto keeps its state in module globals: anything
    else in the host process that uses moto (a test's `mock_aws`, which resets
    every backend when it starts and stops) would otherwise wipe the stack's data.
    """

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._process: Any = None
        self.endpoint_url = ""

    def start(self) -> str:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, self._port), name="emulator", daemon=True)
        self._process.start()
        child.close()
        if not parent.poll(60):
            self.stop()
            raise RuntimeError("the AWS emulator did not start within 60 s")
        self.endpoint_url = f"http://127.0.0.1:{parent.recv()}"
        parent.close()
        return self.endpoint_url

    def stop(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=LOCAL_REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_resources(self, template: Template) -> None:
        create_resources(self.client, template)


def create_resources(self, template: Template) -> None:
        create_resources(self.client, template)


def create_resources(client: Callable[[str], Any], template: Template) -> None:
    """What the template declares and the functions use: tables, generated secrets, KMS keys."""
    create_tables(client("dynamodb"), template)
    create_secrets(client("secretsmanager"), template)
    create_keys(client("kms"), template)


def create_keys(kms: Any, template: Template) -> None:
    """Each KMS key, reachable by the alias `alias/<logical id>` (what !Ref resolves to locally)."""
    for name in template.keys():
        key_id = kms.create_key(Description=name)["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=template.physical_id(name), TargetKeyId=key_id)


def create_secrets(secretsmanager: Any, template: Template) -> None:
    """Each secret named by its logical id; a GenerateSecretString secret gets a random value, as in AWS."""
    for name, props in template.secrets().items():
        secretsmanager.create_secret(Name=name, SecretString=secrets.token_urlsafe(48))


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
