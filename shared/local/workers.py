"""Function execution environments: one process per concurrent invocation, as in Lambda.

A worker process imports the function's handler from its CodeUri with the
layer on sys.path, exactly the module Lambda imports, then serves invocations
one at a time. Idle workers are reused (warm starts); a busy function gets a
new worker (a cold start) up to a concurrency cap. Processes, not threads,
because Lambda code (Powertools' resolver among it) keeps per-request state
in module globals, which is right for Lambda and wrong for shared threads.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from collections.abc import Callable
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any, TextIO

from shared.local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, FunctionSpec

_spawn = multiprocessing.get_context("spawn")


class InvocationError(Exception):
    """The function failed outside its own error handling (crash, init error, timeout).

    `payload` is what Lambda's Invoke API returns for it (X-Amz-Function-Error: Unhandled)."""

    def __init__(self, message: str, error_type: str = "Runtime.Error") -> None:
        super().__init__(message)
        self.payload = {"errorType": error_type, "errorMessage": message}


class InvocationTimeout(InvocationError):
    """The invocation ran past the function's Timeout; its worker was stopped."""


@dataclass
class LocalLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str
    function_version: str = "$LATEST"
    response_stream: Any = None  # set for a streamed Function URL invocation (conduit/chat/streaming.py)

    def __post_init__(self) -> None:
        self.invoked_function_arn = (
            f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"
        )
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_module(spec: FunctionSpec) -> ModuleType:
    """Import a function's handler module from its CodeUri with its layers on sys.path, as Lambda does.
    The module gets a name of its own, so several functions can share one process (benchmarks)."""
    for layer in spec.layer_dirs:
        if str(layer) not in sys.path:
            sys.path.insert(0, str(layer))
    module_name = spec.handler.rsplit(".", 1)[0]
    unique_name = f"conduit_function_{spec.logical_id}"
    module = sys.modules.get(unique_name)
    if module is None:
        module_spec = importlib.util.spec_from_file_location(unique_name, spec.code_dir / f"{module_name}.py")
        assert module_spec and module_spec.loader
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[unique_name] = module
        module_spec.loader.exec_module(module)
    return module


def load_handler(spec: FunctionSpec) -> Callable[[dict[str, Any], Any], Any]:
    return getattr(load_module(spec), spec.handler.rsplit(".", 1)[1])


# Streamed invocations (Function URLs with InvokeMode RESPONSE_STREAM): the worker sends
# ("stream_start", {statusCode, headers}) and ("stream_chunk", bytes) as the handler produces them,
# and waits for ("ack", delivered) after each, so a client that has gone is known at the next
# write, as with a socket; the invocation ends with ("streamed", None) instead of ("ok", result).
OnStream = Callable[[str, Any], bool]


@dataclass(frozen=True)
class StreamedInvocation:
    """An event whose invoker relays a streamed response (plain events are sent as they are)."""

    event: Any


class _PipeResponseStream:
    """`context.response_stream` in a worker (the interface is conduit/chat/streaming.py's)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.started = False

    def start(self, status: int, headers: dict[str, str]) -> bool:
        self.started = True
        return self._send(("stream_start", {"statusCode": status, "headers": headers}))

    def write(self, data: bytes) -> bool:
        return self._send(("stream_chunk", bytes(data)))

    def _send(self, message: tuple[str, Any]) -> bool:
        self._connection.send(message)
        kind, delivered = self._connection.recv()
        return kind == "ack" and bool(delivered)


def report_error(function: str, error: BaseException, stream: TextIO | None = None) -> None:
    """A function's error on stderr: one line for an expected ending (an exception class with
    `expected = True`, e.g. a step of a cancelled run), the traceback for anything else."""
    stream = stream or sys.stderr
    if getattr(error, "expected", False):
        print(f"{function}: {type(error).__name__}: {error}", file=stream, flush=True)
    else:
        traceback.print_exception(error, file=stream)


def start_without_ctrl_c(process: multiprocessing.process.BaseProcess) -> None:
    """Start a process of the stack's (a worker, the emulator) with SIGINT blocked.

    Ctrl-C signals the terminal's whole process group, which Lambda's sandboxes never see: the
    stack stops its processes itself. A signal blocked in the starting thread stays blocked
    across fork and exec, so the child never gets it, not even while it is still starting."""
    # Starting multiprocessing's resource tracker unblocks SIGINT in the calling thread: start it first.
    resource_tracker.ensure_running()
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)


def _worker_main(connection: Connection, spec: FunctionSpec, environment: dict[str, str]) -> None:
    os.environ.update(environment)
    try:
        handler = load_handler(spec)
    except BaseException:  # an init error, reported like Lambda's Runtime.ImportModuleError
        connection.send(("init_error", traceback.format_exc()))
        return
    connection.send(("ready", None))
    while True:
        try:
            event = connection.recv()
        except (EOFError, KeyboardInterrupt):
            return
        context = LocalLambdaContext(spec.logical_id, spec.memory, spec.timeout, str(uuid.uuid4()))
        if isinstance(event, StreamedInvocation):
            context.response_stream = _PipeResponseStream(connection)
            event = event.event
        try:
            result = handler(event, context)
            streamed = context.response_stream is not None and context.response_stream.started
            connection.send(("streamed", None) if streamed else ("ok", result))
        except Exception as error:  # Lambda reports an unhandled error; so do we
            report_error(spec.logical_id, error)
            connection.send(("error", {"errorType": type(error).__name__, "errorMessage": str(error)}))


class _Worker:
    def __init__(self, spec: FunctionSpec, environment: dict[str, str]) -> None:
        self.connection, child_connection = _spawn.Pipe()
        self.process = _spawn.Process(
            target=_worker_main, args=(child_connection, spec, environment), daemon=True, name=spec.logical_id
        )
        start_without_ctrl_c(self.process)
        child_connection.close()
        try:
            status, detail = self.connection.recv()
        except EOFError:  # killed while starting (the stack is stopping)
            self.stop()
            raise InvocationError(f"{spec.logical_id} exited while starting") from None
        if status != "ready":
            self.stop()
            raise InvocationError(f"{spec.logical_id} failed to initialise:\n{detail}")

    def invoke(self, event: dict[str, Any], timeout: float, on_stream: OnStream | None = None) -> Any:
        deadline = time.monotonic() + timeout
        self.connection.send(event if on_stream is None else StreamedInvocation(event))
        while True:
            if not self.connection.poll(max(0.0, deadline - time.monotonic())):
                self.stop()
                raise InvocationTimeout(f"Task timed out after {timeout} seconds", "Sandbox.Timedout")
            try:
                status, payload = self.connection.recv()
            except EOFError:
                self.stop()
                raise InvocationError("the function's process exited") from None
            if status in ("stream_start", "stream_chunk"):  # relayed now; the answer says if the client is there
                self.connection.send(("ack", bool(on_stream and on_stream(status, payload))))
                continue
            if status == "error":
                raise InvocationError(payload["errorMessage"], payload["errorType"])
            return payload  # the result, or None after ("streamed", None): the stream was the response

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()


class FunctionPool:
    """The execution environments of one function."""

    def __init__(self, spec: FunctionSpec, environment: dict[str, str], max_concurrency: int = 16) -> None:
        self.spec = spec
        self.environment = {
            **environment,
            "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        }
        self._idle: list[_Worker] = []
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self._closed = False

    def warm(self) -> None:
        """Start one environment ahead of the first request."""
        with self._slots:
            worker = _Worker(self.spec, self.environment)
            self._release(worker)

    def invoke(self, event: dict[str, Any], on_stream: OnStream | None = None) -> Any:
        """Run one invocation. With `on_stream`, the function may stream its response: each
        ("stream_start", {statusCode, headers}) and ("stream_chunk", bytes) goes to `on_stream`
        as it is produced, which answers whether the client is still there."""
        with self._slots:  # waits, like Lambda's throttling would refuse, past the cap
            with self._lock:
                if self._closed:
                    raise InvocationError("the local stack is stopping")
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                worker = _Worker(self.spec, self.environment)
            try:
                return worker.invoke(event, timeout=self.spec.timeout, on_stream=on_stream)
            finally:
                # A timed-out or crashed worker was stopped; a live one is reused.
                if worker.process.is_alive():
                    self._release(worker)

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if self._closed:
                worker.stop()
            else:
                self._idle.append(worker)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()
