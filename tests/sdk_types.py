"""Checks a request body against the official SDKs' request types (`openai`, `anthropic`: test
dependencies only, never imported at run time).

The SDKs describe request bodies as TypedDicts. pydantic would accept unknown keys and leaves
their `Iterable[...]` fields unchecked (lazy validators), so this walks the types itself and
reports every key the type does not declare, every required key that is missing, every literal
that is not one of the allowed values and every value of the wrong JSON type.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any, Union

import pydantic

# The SDKs build their types with typing_extensions (its TypedDict is not typing's on every version).
import typing_extensions
from typing_extensions import Literal, NotRequired, Required, get_args, get_origin, get_type_hints

_SEQUENCES = {list, tuple, collections.abc.Iterable, collections.abc.Sequence, typing.Iterable, typing.Sequence}
_MAPPINGS = {dict, collections.abc.Mapping, typing.Mapping, typing.Dict}
_SCALARS: dict[Any, tuple[type, ...]] = {str: (str,), int: (int,), float: (int, float), bool: (bool,)}


def problems(value: Any, tp: Any, path: str = "$") -> list[str]:
    """Every way `value` (decoded JSON) does not conform to `tp`; [] when it does."""
    if tp is Any or tp is object:
        return []
    if tp is None or tp is type(None):
        return [] if value is None else [f"{path}: not null"]
    if typing_extensions.is_typeddict(tp) or typing.is_typeddict(tp):
        return _typed_dict(value, tp, path)
    if isinstance(tp, typing.TypeAliasType | typing_extensions.TypeAliasType):
        return problems(value, tp.__value__, path)
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (Required, NotRequired, typing.Required, typing.NotRequired, typing.Annotated):
        return problems(value, args[0], path)
    if origin is Literal:
        return [] if value in args and type(value) in {type(arg) for arg in args} else [f"{path}: {value!r} not in {args}"]
    if origin in (Union, types.UnionType):
        found = [problems(value, arg, path) for arg in args]
        if any(not found_here for found_here in found):
            return []
        return [f"{path}: matches none of {len(args)} alternatives; closest: {min(found, key=len)}"]
    if origin in _SEQUENCES or tp in _SEQUENCES:
        if not isinstance(value, list):
            return [f"{path}: not an array"]
        item = args[0] if args else Any
        return [problem for index, entry in enumerate(value) for problem in problems(entry, item, f"{path}[{index}]")]
    if origin in _MAPPINGS or tp in _MAPPINGS:
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        item = args[1] if len(args) == 2 else Any
        return [problem for key, entry in value.items() for problem in problems(entry, item, f"{path}.{key}")]
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):  # SDK response models also accepted as params
        return _model(value, tp, path)
    if tp in _SCALARS:
        ok = isinstance(value, _SCALARS[tp]) and (tp is bool or not isinstance(value, bool))
        return [] if ok else [f"{path}: {value!r} is not {tp.__name__}"]
    return []  # anything else (dates, file types) never appears in our bodies


def _typed_dict(value: Any, tp: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: not an object ({tp.__name__})"]
    hints = get_type_hints(tp, include_extras=True)
    found = [f"{path}.{key}: not a field of {tp.__name__}" for key in value if key not in hints]
    found += [f"{path}.{key}: required by {tp.__name__}" for key in tp.__required_keys__ if key not in value]
    for key, entry in value.items():
        if key in hints:
            found += problems(entry, hints[key], f"{path}.{key}")
    return found


def _model(value: Any, tp: type[pydantic.BaseModel], path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: not an object ({tp.__name__})"]
    fields = {field.alias or name: field for name, field in tp.model_fields.items()}
    found = [f"{path}.{key}: not a field of {tp.__name__}" for key in value if key not in fields]
    found += [f"{path}.{key}: required by {tp.__name__}" for key, f in fields.items() if f.is_required() and key not in value]
    for key, entry in value.items():
        if key in fields:
            found += problems(entry, fields[key].annotation, f"{path}.{key}")
    return found


def assert_conforms(value: Any, tp: Any) -> None:
    found = problems(value, tp)
    assert not found, "\n".join(found)
