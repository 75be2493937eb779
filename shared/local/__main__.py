"""`python -m shared.local`: serve the platform on http://127.0.0.1:${PORT:-3000} until Ctrl-C."""

from __future__ import annotations

import errno
import os
import signal
import sys

from shared.local.stack import LocalStack


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    port = int(os.environ.get("PORT", "3000"))
    # SIGINT and SIGTERM (a process manager, `kill`) stop as cleanly as Ctrl-C, even when
    # the parent (make) ignored SIGINT for its children.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    stack = LocalStack(port=port)
    try:
        stack.start()
    except OSError as error:
        stack.stop()
        if error.errno == errno.EADDRINUSE:
            print(f"error: port {port} is already in use; stop what uses it or run with another, e.g. PORT={port + 1} make dev", file=sys.stderr, flush=True)
        else:
            print(f"error: the local stack could not start: {error}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        stack.stop()
        return 130
    try:
        # Inside the try: a signal may arrive while the banner is still being written.
        print(
            f"Conduit local stack on {stack.url}  (docs: {stack.url}/docs; Ctrl-C stops; pid {os.getpid()})\n"
            "State (users, sites, agents, runs) is in memory: it is lost when the stack stops. "
            "`make seed` (with `make demo-site` running) puts a demo user, site and agent back; first steps: docs/QUICKSTART.md.",
            flush=True,
        )
        stack.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C while stopping must not abandon the worker processes half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        print("Conduit local stack stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
