"""Lambda's Invoke API (`POST /2015-03-31/functions/<name>/invocations`), answered by the
gateway's port: the emulator forwards boto3's Invoke calls here (state machine tasks,
asynchronous invokes, EventBridge targets), and they run in the functions' worker
processes like API requests.

RequestResponse answers the result, or the unhandled error flagged by
X-Amz-Function-Error; Event queues the invocation and answers 202.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from typing import Any

from shared.local.workers import FunctionPool, InvocationError

LAMBDA_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")

Reply = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body


def invoke(pool: FunctionPool | None, function_name: str, raw: bytes, invocation_type: str | None) -> Reply:
    """The Invoke API's answer for `function_name` (`pool`, None when there is no such function)."""
    if pool is None:
        body = {"Type": "User", "Message": f"Function not found: {function_name}"}
        return 404, [("x-amzn-ErrorType", "ResourceNotFoundException")], json.dumps(body).encode()
    try:
        event = json.loads(raw or b"{}")
    except ValueError:
        body = {"Type": "User", "Message": "Could not parse request body into json"}
        return 400, [("x-amzn-ErrorType", "InvalidRequestContentException")], json.dumps(body).encode()
    if invocation_type == "Event":
        threading.Thread(target=_invoke_in_background, args=(pool, event), daemon=True).start()
        return 202, [], b""
    try:
        return 200, [("X-Amz-Executed-Version", "$LATEST")], json.dumps(pool.invoke(event)).encode()
    except InvocationError as error:
        headers = [("X-Amz-Function-Error", "Unhandled"), ("X-Amz-Executed-Version", "$LATEST")]
        return 200, headers, json.dumps(error.payload).encode()


def _invoke_in_background(pool: FunctionPool, event: Any) -> None:
    try:
        pool.invoke(event)
    except InvocationError as error:  # Lambda would log it and retry twice; the worker printed the trace
        print(f"{pool.spec.logical_id} (async): {error.payload}", file=sys.stderr, flush=True)
