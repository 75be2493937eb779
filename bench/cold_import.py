"""Cold import time of each function's handler module, in fresh processes.

A Lambda cold start pays for importing the handler module; this measures just
that, as the median of several fresh interpreters, next to a bare Powertools +
boto3 handler as the baseline. Each process sees only the packages Lambda would have:
the layer's requirements and what they require, plus the runtime's boto3; the rest of
this virtualenv (test and dev tools: moto's cryptography, httpx's optional CLI with rich,
click and pygments) is hidden, else PyJWT and httpx would import them here and never there.
The time is the importing process's CPU time
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
from importlib import metadata
from pathlib import Path
from typing import Any

from shared.local.template import Template

ROOT = Path(__file__).resolve().parents[1]
LAYER_REQUIREMENTS = ROOT / "layers" / "conduit" / "requirements.txt"
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
class _NotInLambda:
    hidden = frozenset({hidden!r})
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.hidden:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the Lambda layer)", name=name)
        return None
sys.meta_path.insert(0, _NotInLambda())
started = time.process_time()
importlib.import_module({module!r})
print(time.process_time() - started)
"""


RUNTIME = ("boto3",)  # what the Lambda Python runtime provides besides the standard library


def _top_level_names(distribution: metadata.Distribution) -> set[str]:
    listed = distribution.read_text("top_level.txt")
    if listed:
        return {line.strip() for line in listed.splitlines() if line.strip()}
    names = set()
    for file in distribution.files or ():
        first = file.parts[0]
        if first.endswith((".dist-info", ".egg-info", ".data")) or first in ("..", "__pycache__"):
            continue
        names.add(first.removesuffix(".py") if len(file.parts) == 1 else first)
    return {name for name in names if name.isidentifier()}


def hidden_packages(requirements: Path = LAYER_REQUIREMENTS) -> list[str]:
    """Top-level modules of this virtualenv's distributions that a Lambda with the layer would not have."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted = [Requirement(line.split("#")[0].strip()) for line in requirements.read_text().splitlines() if line.split("#")[0].strip()]
    wanted += [Requirement(name) for name in RUNTIME]
    closure: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name in closure:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        closure.add(name)
        for line in distribution.requires or ():
            needed = Requirement(line)
            extras = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras):
                wanted.append(needed)
    kept: set[str] = set()
    others: set[str] = set()
    for distribution in metadata.distributions():
        names = _top_level_names(distribution)
        (kept if canonicalize_name(distribution.metadata["Name"]) in closure else others).update(names)
    return sorted(others - kept - set(sys.stdlib_module_names))


def _import_seconds(paths: list[str], module: str, environment: dict[str, str], hidden: list[str]) -> float:
    output = subprocess.run(
        [sys.executable, "-c", PROBE.format(paths=paths, module=module, hidden=hidden)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    ).stdout
    return float(output.strip().splitlines()[-1])


def _environment() -> dict[str, str]:
    """The probes' environment. Bytecode is written and read, as the layer ships it: PYTHONDONTWRITEBYTECODE
    set to anything (even "0") would compile every module from source in every process."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return environment | {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_SERVICE_NAME": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


Target = tuple[str, list[str], str, dict[str, str]]  # (name, sys.path entries, module, environment)


def _baseline_target(scratch: str, environment: dict[str, str]) -> Target:
    (Path(scratch) / "baseline_handler.py").write_text(BASELINE)
    return ("baseline (Powertools + boto3)", [scratch], "baseline_handler", environment)


def _function_target(spec: Any, environment: dict[str, str]) -> Target:
    paths = [str(spec.code_dir), *(str(layer) for layer in spec.layer_dirs)]
    # The function's own variables, as in Lambda (a function checks those it needs at import).
    return (spec.logical_id, paths, spec.handler.rsplit(".", 1)[0], {**environment, **spec.environment})


def measure(runs: int = 7, root: Path = ROOT) -> list[dict[str, object]]:
    """`root`: the checkout whose functions are measured (another one to compare a change)."""
    environment = _environment()
    rows = []
    hidden = hidden_packages(root / "layers" / "conduit" / "requirements.txt")
    with tempfile.TemporaryDirectory() as scratch:
        targets = [_baseline_target(scratch, environment)]
        targets += [_function_target(spec, environment) for spec in Template(root / "template.yaml").functions()]
        for _, paths, module, variables in targets:
            _import_seconds(paths, module, variables, hidden)  # warm the bytecode cache, not the process
        # Rounds of every target in turn, so a change in the machine's load falls on all of them.
        samples: list[list[float]] = [[] for _ in targets]
        for _ in range(runs):
            for index, (_, paths, module, variables) in enumerate(targets):
                samples[index].append(_import_seconds(paths, module, variables, hidden))
        for (name, _, _, _), taken in zip(targets, samples):
            rows.append(
                {"function": name, "median_ms": round(statistics.median(taken) * 1000, 1), "min_ms": round(min(taken) * 1000, 1)}
            )
    # The ratio is of the fastest runs: other work on the machine only ever adds time, so the
    # minimum is the figure it disturbs least (the median moved by ±20% between loaded runs).
    baseline = rows[0]["min_ms"]
    for row in rows:
        row["ratio_to_baseline"] = round(row["min_ms"] / baseline, 2)  # type: ignore[operator]
    return rows


def bytecode_effect(runs: int = 3, function: str = "ChatFunction") -> list[dict[str, object]]:
    """The same cold import with the modules' bytecode and without it (every module compiled from
    source, as in Lambda when a layer is deployed without .pyc files: its filesystem is read-only,
    so nothing compiled is kept). The baseline and one function, minimum of `runs` interleaved."""
    environment = _environment()
    hidden = hidden_packages()
    spec = next(spec for spec in Template(ROOT / "template.yaml").functions() if spec.logical_id == function)
    with tempfile.TemporaryDirectory() as scratch, tempfile.TemporaryDirectory() as no_bytecode:
        targets = [_baseline_target(scratch, environment), _function_target(spec, environment)]
        # Bytecode is looked for (and not written) under an empty directory: none is found.
        from_source = {"PYTHONPYCACHEPREFIX": no_bytecode, "PYTHONDONTWRITEBYTECODE": "1"}
        samples: dict[tuple[str, bool], list[float]] = {}
        for _, paths, module, variables in targets:
            _import_seconds(paths, module, variables, hidden)  # the bytecode cache, written
        for _ in range(runs):
            for name, paths, module, variables in targets:
                for compiled in (True, False):
                    taken = _import_seconds(paths, module, variables if compiled else {**variables, **from_source}, hidden)
                    samples.setdefault((name, compiled), []).append(taken)
    return [
        {
            "target": name,
            "with_bytecode_ms": round(min(samples[(name, True)]) * 1000, 1),
            "from_source_ms": round(min(samples[(name, False)]) * 1000, 1),
        }
        for name, _, _, _ in targets
    ]
