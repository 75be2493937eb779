"""The one way to parse JSON that someone else wrote: request bodies, webhook payloads, manifests,
tool results, provider answers, Stripe payloads, OAuth token answers.

`json.loads` raises RecursionError (not ValueError) on deep nesting, accepts `NaN`/`Infinity`, and
turns a 5,000-digit integer into ValueError from int(): callers that catch ValueError would 500 on
the first and store the second. Here every refusal is a `json.JSONDecodeError` (a ValueError, and
what Powertools' body validation turns into 400 VALIDATION_ERROR).
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # arrays/objects inside each other; more than any real payload, far below the stack


class TooDeep(json.JSONDecodeError):
    """Nested deeper than allowed: hostile rather than merely malformed."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(data: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """Strict JSON (RFC 8259: no NaN/Infinity), nested at most `max_depth` deep, else JSONDecodeError."""
    try:
        text = data.decode("utf-8-sig") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError:
        raise json.JSONDecodeError("not UTF-8", "", 0) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise TooDeep(f"nested deeper than {max_depth} levels", text, 0) from None
    except ValueError as error:  # NaN/Infinity, an integer beyond Python's digit limit
        raise json.JSONDecodeError(str(error)[:200], text, 0) from None
    # Counting brackets first keeps the walk off the common, shallow case.
    if text.count("[") + text.count("{") > max_depth and depth(value) > max_depth:
        raise TooDeep(f"nested deeper than {max_depth} levels", text, 0)
    return value


def depth(value: Any) -> int:
    """Nesting depth of a parsed value, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, level = stack.pop()
        if isinstance(current, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in current.values())
        elif isinstance(current, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in current)
    return deepest
