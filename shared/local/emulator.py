"""AWS emulated by moto, one request at a time.

moto's backends are not thread-safe: two conditional writes handled in
parallel can both pass their condition. Every call into moto therefore runs
under one lock, which makes each emulated request atomic as it is in AWS:
- `Emulator` serves moto on a loopback port for the local stack's function
  processes (their boto3 clients use it through AWS_ENDPOINT_URL);
- `serialize_in_process_moto()` gives tests that call moto in-process
  (`mock_aws`) from several threads the same guarantee.

moto also executes the Step Functions definitions (its ASL engine). Two things
it cannot do alone are wired here, as AWS would do them:
- Lambda: an Invoke (from a state machine's task, or any boto3 client) is
  forwarded, outside the lock, to the local stack's Lambda endpoint, which
  runs the function in its worker processes;
- EventBridge: when an execution ends, a "Step Functions Execution Status
  Change" event goes to each function whose EventBridgeRule pattern matches.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import boto3

from shared.local.invoke_api import LAMBDA_INVOKE_PATH
from shared.local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, EventRule, Template
from shared.local.workers import start_without_ctrl_c

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


def _with_lambda(app: Callable[..., Iterable[bytes]], lambda_endpoint: str) -> Callable[..., Iterable[bytes]]:
    """Send Lambda Invoke requests to the local stack's functions, the rest to moto.

    Outside EMULATOR_LOCK: the function calls back into the emulator while it runs."""
    import httpx

    def routed_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not (environ["REQUEST_METHOD"] == "POST" and LAMBDA_INVOKE_PATH.match(path)):
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {"X-Amz-Invocation-Type": environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse")}
        response = httpx.post(f"{lambda_endpoint}{path}", content=body, headers=headers, timeout=None)
        passed = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        start_response(f"{response.status_code} {response.reason_phrase}", [*passed, ("Content-Length", str(len(response.content)))])
        return [response.content]

    return routed_app


def _matches(pattern: Any, value: Any) -> bool:
    """EventBridge pattern matching for the forms template.yaml uses: nested objects and value lists."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(_matches(sub, value.get(key)) for key, sub in pattern.items())
    if isinstance(pattern, list):
        return value in pattern
    return pattern == value


def _publish_execution_status_changes(lambda_endpoint: str, rules: list[EventRule]) -> None:
    """Deliver Step Functions' "Execution Status Change" events when executions end, as EventBridge does.

    StopExecution ends an execution at once in AWS: ABORTED, and the event, right away. moto
    instead lets the task in flight finish first (a blocked tool call could outlast the run's
    timeout and turn the stop into TIMED_OUT), so a stop is reported when it is requested and
    the execution's later termination is not reported again.
    """
    import httpx
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution

    reflect, stop = BaseExecutionWorkerCommunication.terminated, Execution.stop

    def publish(execution: Any) -> None:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": LOCAL_ACCOUNT_ID,
            "time": execution.stop_date.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": LOCAL_REGION,
            "resources": [execution.exec_arn],
            "detail": {
                "executionArn": execution.exec_arn,
                "stateMachineArn": execution.state_machine.arn,
                "name": execution.name,
                "status": str(execution.exec_status.value),
                "startDate": int(execution.start_date.timestamp() * 1000),
                "stopDate": int(execution.stop_date.timestamp() * 1000),
                "error": execution.error,
                "cause": execution.cause,
            },
        }
        for rule in rules:
            if _matches(rule.pattern, event):
                # Asynchronous, as EventBridge invokes its targets; off this thread, which may hold the lock.
                threading.Thread(
                    target=httpx.post,
                    args=(f"{lambda_endpoint}/2015-03-31/functions/{rule.function}/invocations",),
                    kwargs={"content": json.dumps(event), "headers": {"X-Amz-Invocation-Type": "Event"}},
                    daemon=True,
                ).start()

    def stop_execution(self: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        stop(self, stop_date, error, cause)
        if self.exec_status == ExecutionStatus.RUNNING:
            self.stopped_by_request = True
            self.exec_status, self.stop_date = ExecutionStatus.ABORTED, stop_date
            publish(self)

    def terminated(self: Any) -> None:
        if getattr(self.execution, "stopped_by_request", False):
            return  # reported as ABORTED when it was stopped
        reflect(self)
        publish(self.execution)

    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]
    Execution.stop = stop_execution  # type: ignore[method-assign]


_PLAIN_SCALARS = {"S": str, "N": str, "BOOL": bool, "NULL": bool}


def _plain_attribute_value(value: Any) -> bool:
    """A DynamoDB AttributeValue already in its wire form, with nothing to encode (no binary)."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((kind, inner),) = value.items()
    if kind in _PLAIN_SCALARS:
        return type(inner) is _PLAIN_SCALARS[kind]
    if kind in ("SS", "NS"):
        return isinstance(inner, list) and all(type(member) is str for member in inner)
    if kind == "M":
        return isinstance(inner, dict) and all(type(name) is str and _plain_attribute_value(v) for name, v in inner.items())
    if kind == "L":
        return isinstance(inner, list) and all(_plain_attribute_value(member) for member in inner)
    return False


def _fast_attribute_values() -> None:
    """moto's JSON serializer walks every AttributeValue member by member, trying attribute
    aliases for each of its ten possible keys: about half of the emulator's time per DynamoDB
    request (profiled: 10 ms of a 20 ms GetItem/Query/UpdateItem), all of it spent under the one
    lock every worker waits on. Items moto keeps are already in wire form, so a plain one
    (strings, numbers, booleans, lists, maps: anything but binary) is written as it is; binary
    values, and anything not shaped as expected, still take moto's own path."""
    from moto.core.serialize import BaseJSONSerializer

    walk = BaseJSONSerializer._serialize_type_structure

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue" and _plain_attribute_value(value):
            self._default_serialize(serialized, value, shape, key)
            return
        walk(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]


def transactions_copy_only_their_items() -> None:
    """moto's TransactWriteItems deep-copies the whole table once per item it writes, to roll
    back on failure: O(table size) per transaction. The local stack's one table grows over a
    session, and a transaction with it (bench/emulator_table_size.py: 12 ms at 100 items,
    230 ms at 5,000, 1.6 s at 20,000; 3-6 ms this way), until an exchange of four tool calls
    ran past CHAT_TIMEOUT on a loaded CI machine. A transaction changes only the items it
    names, so those are copied and put back on failure; the rest is moto's own code, with its
    whole-table copy made a no-op. Idempotent."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    if getattr(DynamoDBBackend.transact_write_items, "copies_only_its_items", False):
        return
    transact = DynamoDBBackend.transact_write_items

    def keys_named(backend: Any, transact_items: Any) -> list[tuple[Any, Any, Any]]:
        named = []
        for entry in transact_items if isinstance(transact_items, list) else []:
            operation = next(iter(entry.values()), None) if isinstance(entry, dict) else None
            table = backend.tables.get(operation.get("TableName")) if isinstance(operation, dict) else None
            key = (operation.get("Key") or operation.get("Item")) if table is not None else None
            if not isinstance(key, dict) or table.hash_key_attr not in key:
                continue  # moto refuses the transaction itself, before it writes anything
            range_key = key.get(table.range_key_attr) if table.range_key_attr else None
            if table.range_key_attr and range_key is None:
                continue
            named.append((table, DynamoType(key[table.hash_key_attr]), DynamoType(range_key) if range_key else None))
        return named

    def stored(table: Any, hash_value: Any, range_value: Any) -> Any:
        # Not table.get_item: its defaultdict lookup would add an empty partition.
        return table.items.get(hash_value, {}).get(range_value) if range_value else table.items.get(hash_value)

    def put_back(table: Any, hash_value: Any, range_value: Any, item: Any) -> None:
        partition = table.items[hash_value] if range_value else table.items
        slot = range_value if range_value else hash_value
        if item is None:
            partition.pop(slot, None)
        else:
            partition[slot] = item

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        before = [(*key, copy.deepcopy(stored(*key))) for key in keys_named(self, transact_items)]
        Table.__deepcopy__ = lambda table, memo: table  # type: ignore[attr-defined]  # under EMULATOR_LOCK
        try:
            return transact(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(before):
                put_back(table, hash_value, range_value, item)
            raise
        finally:
            del Table.__deepcopy__  # type: ignore[attr-defined]

    transact_write_items.copies_only_its_items = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def queries_read_only_their_partition() -> None:
    """moto answers a Query of the table by walking every item of every partition (O(table
    size): bench/emulator_table_size.py prints 330 ms at 20,000 items), although it keeps the
    items by partition. A table query (not an index's) reads its one partition: moto's own
    query runs with the table's items narrowed to that partition for the call. Idempotent."""
    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "reads_only_its_partition", False):
        return
    query = Table.query

    def query_one_partition(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        everything = self.items
        self.items = {hash_key: everything[hash_key]} if hash_key in everything else {}  # under EMULATOR_LOCK
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            self.items = everything

    query_one_partition.reads_only_its_partition = True  # type: ignore[attr-defined]
    Table.query = query_one_partition  # type: ignore[method-assign]


def _serve(connection: Any, port: int, lambda_endpoint: str, rules: list[EventRule]) -> None:
    """The emulator process: moto's server app, every request under EMULATOR_LOCK."""
    from moto.core.config import default_user_config
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    # Executions run their definitions; Lambda tasks never need Docker (they are forwarded).
    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    default_user_config["lambda"] = {"use_docker": False}
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per emulated AWS call
    # moto's ASL engine logs every caught task error with a dump of the whole state tree; a
    # failed run is recorded on the run itself (GET /runs/{runId}) and in the function's log.
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    _fast_attribute_values()
    transactions_copy_only_their_items()
    queries_read_only_their_partition()
    app = _serialized(DomainDispatcherApplication(create_backend_app))
    if lambda_endpoint:
        app = _with_lambda(app, lambda_endpoint)
        _publish_execution_status_changes(lambda_endpoint, rules)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    # moto's state machine tasks call AWS services on http://localhost:$MOTO_PORT: this server.
    os.environ["MOTO_PORT"] = str(server.server_address[1])
    connection.send(server.server_address[1])
    server.serve_forever()


class Emulator:
    """moto's server on 127.0.0.1, in a process of its own.

    Its own process because moto keeps its state in module globals: anything
    else in the host process that uses moto (a test's `mock_aws`, which resets
    every backend when it starts and stops) would otherwise wipe the stack's data.
    """

    def __init__(self, port: int = 0, lambda_endpoint: str = "", event_rules: list[EventRule] | None = None) -> None:
        self._port = port
        self._process: Any = None
        self.endpoint_url = ""
        self.lambda_endpoint = lambda_endpoint  # where Lambda Invoke requests go (the local stack)
        self.event_rules = event_rules or []

    def start(self) -> str:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, self._port, self.lambda_endpoint, self.event_rules), name="emulator", daemon=True
        )
        start_without_ctrl_c(self._process)
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


def create_resources(client: Callable[[str], Any], template: Template) -> None:
    """What the template declares and the functions use: tables, generated secrets, KMS keys,
    state machines and schedule groups."""
    create_tables(client("dynamodb"), template)
    create_secrets(client("secretsmanager"), template)
    create_keys(client("kms"), template)
    create_state_machines(client("stepfunctions"), template)
    for group in template.schedule_groups():
        client("scheduler").create_schedule_group(Name=group)


def create_state_machines(stepfunctions: Any, template: Template) -> None:
    """Each state machine, by its name, from the same definition file AWS deploys."""
    for name, definition in template.state_machines().items():
        stepfunctions.create_state_machine(
            name=name,
            definition=definition,
            roleArn=f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/{name}Role",
            type="STANDARD",
        )


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
