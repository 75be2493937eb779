"""Cold import time of each function's handler module, in fresh processes.

A Lambda cold start pays for importing the handler module; this measures just
that, as the median of several fresh interpreters, next to a bare Powertools +
boto3 handler as the baseline. The time is the importing process's CPU time
(user + system), not wall time: on this 2-core machine shared with other work,
wall time mostly measures the neighbours (the same module read 600-950 ms at a
load average of 7 and ~330 ms idle), while an import is CPU-bound work.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from shared.local.template import Template

ROOT = Path(__file__).resolve().parents[1]
BASELINE = """
import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
app = APIGatewayRestResolver(enable_validation=True)
logger, tracer, metrics = Logger(), Tracer(), Metrics()
@app.get("/health")
def health() -> dict:
    return {"status": "ok"}
"""
PROBE = """
import importlib, sys, time
sys.path[:0] = {paths!r}
started = time.process_time()
importlib.import_module({module!r})
print(time.process_time() - started)
"""


def _import_seconds(paths: list[str], module: str, environment: dict[str, str]) -> float:
    output = subprocess.run(
        [sys.executable, "-c", PROBE.format(paths=paths, module=module)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    ).stdout
    return float(output.strip().splitlines()[-1])


def measure(runs: int = 7) -> list[dict[str, object]]:
    environment = {
        **os.environ,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONDONTWRITEBYTECODE": "0",
    }
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "baseline_handler.py").write_text(BASELINE)
        targets = [("baseline (Powertools + boto3)", [scratch], "baseline_handler")]
        for spec in Template().functions():
            paths = [str(spec.code_dir), *(str(layer) for layer in spec.layer_dirs)]
            targets.append((spec.logical_id, paths, spec.handler.rsplit(".", 1)[0]))
        for _, paths, module in targets:
            _import_seconds(paths, module, environment)  # warm the bytecode cache, not the process
        # Rounds of every target in turn, so a change in the machine's load falls on all of them.
        samples: list[list[float]] = [[] for _ in targets]
        for _ in range(runs):
            for index, (_, paths, module) in enumerate(targets):
                samples[index].append(_import_seconds(paths, module, environment))
        for (name, _, _), taken in zip(targets, samples):
            rows.append({"function": name, "median_ms": round(statistics.median(taken) * 1000, 1)})
    baseline = rows[0]["median_ms"]
    for row in rows:
        row["ratio_to_baseline"] = round(row["median_ms"] / baseline, 2)  # type: ignore[operator]
    return rows
