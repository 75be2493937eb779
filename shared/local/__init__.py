"""The local stack behind `make dev` (README.md, "The local stack").

Its gateway builds Lambda's events with the layer's own builders
(conduit/http/events.py, which the stream server uses on AWS), so the layer is
on this process's path as it is on a function's (first, as Lambda puts /opt/python).
"""

import sys
from pathlib import Path

LAYER_DIR = str(Path(__file__).resolve().parents[2] / "layers" / "conduit")
if LAYER_DIR not in sys.path:
    sys.path.insert(0, LAYER_DIR)
