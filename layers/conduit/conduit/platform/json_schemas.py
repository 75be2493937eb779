"""JSON Schemas that users (an agent's webhookSchema) or sites (a tool's input schema) supply.

jsonschema resolves a `$ref` it does not know by fetching it with urllib: a fetch around the guarded
client (outbound.py), redirects followed, the answer reflected in error messages. Every validator of
an untrusted schema is built here with a registry that retrieves nothing, and only references inside
the schema itself (`#`, `#/…`) are accepted when a schema is stored. A schema stored before that rule
that still cannot be resolved is a validation problem when used, never a 500.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for as _validator_class
from referencing import Registry
from referencing.exceptions import NoSuchResource, Unresolvable

from conduit.platform.safe_json import depth

MAX_DEPTH = 32  # nesting of a schema; deeper ones are refused when stored


def _retrieve_nothing(uri: str) -> Any:
    raise NoSuchResource(ref=uri)


# Empty and retrieving nothing; jsonschema still adds the draft meta-schemas it ships with.
_OFFLINE = Registry(retrieve=_retrieve_nothing)  # type: ignore[call-arg]
_REFERENCE_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")
_IDENTITY_KEYS = ("$id", "id", "$anchor", "$dynamicAnchor", "$recursiveAnchor")

Problem = tuple[str, str]  # (dotted path inside the schema or instance, message)


def validator_for(schema: dict[str, Any]) -> Validator:
    """A validator of the schema's draft (2020-12 when it names none) that never touches the network."""
    cls = _validator_class(schema, default=Draft202012Validator)
    return cls(schema, registry=_OFFLINE)


def schema_problems(schema: Any) -> list[Problem]:
    """Why a supplied schema cannot be stored: not a schema of its draft, too deep, or a reference
    that does not point inside itself. Empty when it can."""
    if not isinstance(schema, dict):
        return [("", "must be a JSON object")]
    if depth(schema) > MAX_DEPTH:
        return [("", f"is nested deeper than {MAX_DEPTH} levels")]
    cls = _validator_class(schema, default=Draft202012Validator)
    try:
        meta = cls(cls.META_SCHEMA, registry=_OFFLINE)
        problems = [(_dotted(error.absolute_path), error.message) for error in meta.iter_errors(schema)]
    except (Unresolvable, SchemaError, RecursionError):  # pragma: no cover - the shipped meta-schemas resolve
        return [("", "cannot be checked as a JSON Schema")]
    if problems:
        return sorted(problems)[:20]
    return [("", message) for message in _reference_problems(schema)]


def instance_problems(schema: dict[str, Any], instance: Any, limit: int = 20) -> list[Problem]:
    """Where the instance does not match the schema. A reference that cannot be resolved offline, or a
    schema that recurses without end, is reported as a problem rather than raised."""
    try:
        errors = sorted(validator_for(schema).iter_errors(instance), key=lambda error: list(map(str, error.absolute_path)))
        return [(_dotted(error.absolute_path), error.message) for error in errors[:limit]]
    except Unresolvable as error:
        return [("", f"the schema has a reference that cannot be resolved: {str(getattr(error, 'ref', ''))[:80]!r}")]
    except (SchemaError, RecursionError):
        return [("", "the schema cannot be applied")]


def _reference_problems(schema: dict[str, Any]) -> list[str]:
    """Only `#…` references that resolve inside the schema itself; no `$id` or anchors (which would
    give parts of it another base URI that a reference could then name)."""
    problems: list[str] = []
    stack: list[Any] = [schema]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            stack.extend(current)
            continue
        if not isinstance(current, dict):
            continue
        for key in _IDENTITY_KEYS:
            if key in current and (key != "id" or isinstance(current[key], str) and current is schema):
                problems.append(f"{key} is not supported here")
        for key in _REFERENCE_KEYS:
            if key not in current:
                continue
            value = current[key]
            if not isinstance(value, str) or not value.startswith("#") or _pointer(schema, value[1:]) is None:
                problems.append(f"{key} {str(value)[:80]!r} does not point inside the schema")
        stack.extend(current.values())
    return sorted(set(problems))


def _pointer(document: Any, pointer: str) -> Any:
    """The value at a JSON Pointer (RFC 6901, percent-decoding not supported), or None."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        return None
    current = document
    for part in pointer[1:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _dotted(path: Any) -> str:
    return ".".join(str(part) for part in path)
