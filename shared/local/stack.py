"""The whole platform on one machine: emulated AWS, every function, one HTTP endpoint.

    stack = LocalStack(port=3000).start()   # what `make dev` runs
    ...
    stack.stop()

Tests start the same object on an ephemeral port, so what they exercise is
what `make dev` serves.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.local.emulator import FAKE_CREDENTIALS, Emulator
from shared.local.gateway import Gateway
from shared.local.routing import Router
from shared.local.scheduler import Scheduler
from shared.local.template import TEMPLATE_PATH, Template
from shared.local.workers import FunctionPool

# Set in every local function on top of template.yaml's environment.
LOCAL_ENVIRONMENT = {
    "LOCAL_MODE": "true",
    "STAGE": "local",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


def function_environment(template_values: dict[str, str], emulator_url: str) -> dict[str, str]:
    """A function's environment: the template's values, each overridden by the
    same-named variable of the caller's environment (that is how knobs reach it)."""
    environment = {name: os.environ.get(name, value) for name, value in template_values.items()}
    environment.update(LOCAL_ENVIRONMENT)
    environment.update(FAKE_CREDENTIALS)
    environment["AWS_ENDPOINT_URL"] = emulator_url
    return environment


class LocalStack:
    def __init__(
        self,
        port: int = 3000,
        host: str = "127.0.0.1",
        template_path: Path = TEMPLATE_PATH,
        quiet: bool = False,
        max_concurrency: int = 16,
    ) -> None:
        self.template = Template(template_path, os.environ)
        self.host = host
        self.port = port
        self.quiet = quiet
        self.max_concurrency = max_concurrency
        self.emulator: Emulator | None = None
        self.pools: list[FunctionPool] = []
        self.gateway: Gateway | None = None
        self._thread: threading.Thread | None = None
        self.scheduler: Scheduler | None = None

    @property
    def url(self) -> str:
        assert self.gateway is not None
        host, port = self.gateway.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, warm: bool = True) -> LocalStack:
        # Bind first: the port is part of what functions are told (Function URLs, the Lambda endpoint).
        self.gateway = Gateway((self.host, self.port), Router([]), self.template.gateway_responses(), quiet=self.quiet)
        self.template.local_url = self.url
        self.emulator = Emulator(lambda_endpoint=self.url, event_rules=self.template.event_rules())
        emulator_url = self.emulator.start()
        self.emulator.create_resources(self.template)
        self.pools = [
            FunctionPool(spec, function_environment(spec.environment, emulator_url), self.max_concurrency)
            for spec in self.template.functions()
        ]
        if warm:  # one environment per function up front: the first request is not a cold start
            with ThreadPoolExecutor(max_workers=4) as executor:
                list(executor.map(FunctionPool.warm, self.pools))
        self.gateway.router = Router(self.pools)
        # EventBridge Scheduler's clock: moto keeps the schedules, this fires them.
        self.scheduler = Scheduler(lambda: self.emulator.client("scheduler"), self._invoke_async).start()
        return self

    def _invoke_async(self, function: str, payload: str) -> None:
        """An Event invoke through the stack's Lambda API, as Scheduler invokes its target."""
        import httpx

        httpx.post(
            f"{self.url}/2015-03-31/functions/{function}/invocations",
            content=payload.encode(),
            headers={"X-Amz-Invocation-Type": "Event"},
            timeout=30,
        )

    def serve_forever(self) -> None:
        assert self.gateway is not None
        self.gateway.serve_forever()

    def serve_in_background(self) -> LocalStack:
        self._thread = threading.Thread(target=self.serve_forever, name="gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.gateway is not None:
            if self._thread is not None:
                self.gateway.shutdown()
                self._thread.join(timeout=5)
            self.gateway.server_close()
        for pool in self.pools:
            pool.close()
        if self.emulator is not None:
            self.emulator.stop()
