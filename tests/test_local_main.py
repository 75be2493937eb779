"""`python -m shared.local` (what `make dev` execs): stops cleanly on SIGINT and SIGTERM, and a
port in use is one clear line, not a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shared.local"],
        cwd=ROOT,
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_server_stops_cleanly_on_a_signal(signum):
    process = start(free_port())
    try:
        banner = process.stdout.readline()  # printed once it serves
        assert "Conduit local stack on http://127.0.0.1:" in banner, banner + process.stderr.read()
        state = process.stdout.readline()
        assert "in memory" in state and "make seed" in state  # and the cheap way to get it back
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Conduit local stack stopped." in out
    assert "Traceback" not in err, err


def test_a_port_in_use_is_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start(port)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.strip() == f"error: port {port} is already in use; stop what uses it or run with another, e.g. PORT={port + 1} make dev"
    assert "Traceback" not in err


def test_expected_run_endings_are_one_line_and_faults_a_traceback():
    import io

    from conduit.agents.run_steps import StepFailed, TransientStepError
    from shared.local.workers import report_error

    for error in (StepFailed('{"code":"RUN_ENDED","message":"The run has already ended"}'), TransientStepError('{"code":"SITE_UNAVAILABLE"}')):
        stream = io.StringIO()
        report_error("RunStepsFunction", error, stream)
        assert stream.getvalue() == f"RunStepsFunction: {type(error).__name__}: {error}\n"
    try:
        raise ValueError("a bug")
    except ValueError as error:
        stream = io.StringIO()
        report_error("RunStepsFunction", error, stream)
    assert stream.getvalue().startswith("Traceback (most recent call last):") and "ValueError: a bug" in stream.getvalue()


@pytest.mark.parametrize("how", ["SIGTERM to make", "Ctrl-C (SIGINT to the process group)"])
def test_make_dev_stops_on_sigterm_to_make_and_on_ctrl_c(how):
    """Through make itself, as a person runs it (`-o` keeps make from re-checking the virtualenv)."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    port = free_port()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "dev", f"PORT={port}"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    try:
        lines = [process.stdout.readline() for _ in range(2)]  # make's echo of the recipe, then the banner
        assert any(f"Conduit local stack on http://127.0.0.1:{port}" in line for line in lines), lines
        if how.startswith("SIGTERM"):
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "Conduit local stack stopped." in out, out + err
    assert "Traceback" not in err, err


def test_the_stacks_processes_never_get_ctrl_c(client):
    """Ctrl-C signals the terminal's whole process group: the emulator and every function worker
    have SIGINT blocked from birth (a worker still starting once printed a KeyboardInterrupt
    traceback), and the stack stops them itself."""
    assert client.get("/health").status_code == 200  # at least one function worker exists
    spawned = []
    for pid in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for child in pid.read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"multiprocessing.spawn" in command:
                status = Path(f"/proc/{child}/status").read_text()
                blocked = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)
                spawned.append((child, bool(blocked & (1 << (signal.SIGINT - 1)))))
    assert len(spawned) >= 2, spawned  # the emulator and a worker
    assert all(blocked for _, blocked in spawned), spawned
