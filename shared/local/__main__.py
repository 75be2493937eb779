"""`python -m shared.local`: serve the platform on http://127.0.0.1:${PORT:-3000} until Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys

from shared.local.stack import LocalStack


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    port = int(os.environ.get("PORT", "3000"))
    stack = LocalStack(port=port).start()
    # SIGTERM (e.g. from a process manager) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"Conduit local stack on {stack.url}  (docs: {stack.url}/docs; Ctrl-C stops)", flush=True)
    try:
        stack.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        print("Conduit local stack stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
