"""Which function answers a request: API Gateway's route matching, and the Function URLs
mounted on the same port.

Routes are the `Api` events of template.yaml's functions; Function URLs are mounted at their
`Metadata.LocalUrlPrefix` (the prefix stripped) or at exactly their `Metadata.LocalUrlPaths`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from shared.local.template import Route
from shared.local.workers import FunctionPool


@dataclass(frozen=True)
class Match:
    pool: FunctionPool
    route: Route | None  # None for a Function URL
    path_parameters: dict[str, str]
    url_path: str = "/"  # the path a Function URL function sees


def match_route(route: Route, segments: list[str]) -> tuple[tuple[int, ...], dict[str, str]] | None:
    """Match like API Gateway: literal beats {param} beats {proxy+}. Returns (rank, parameters)."""
    pattern = [part for part in route.path.split("/") if part]
    parameters: dict[str, str] = {}
    rank: list[int] = []
    for index, part in enumerate(pattern):
        if part.startswith("{") and part.endswith("+}"):
            if index >= len(segments):
                return None
            parameters[part[1:-2]] = "/".join(segments[index:])
            return (*rank, 2), parameters
        if index >= len(segments):
            return None
        if part.startswith("{") and part.endswith("}"):
            parameters[part[1:-1]] = unquote(segments[index])
            rank.append(1)
        elif part == segments[index]:
            rank.append(0)
        else:
            return None
    if len(pattern) != len(segments):
        return None
    return tuple(rank), parameters


class Router:
    """The stack's functions: the one a request goes to (`match`), and one by name for Invoke (`pool`)."""

    def __init__(self, pools: list[FunctionPool]) -> None:
        self._by_name = {pool.spec.logical_id: pool for pool in pools}
        self._routes = [(route, pool) for pool in pools for route in pool.spec.routes]
        self._url_functions = sorted(
            ((pool.spec.url_prefix.rstrip("/"), pool) for pool in pools if pool.spec.url_prefix),
            key=lambda item: -len(item[0]),
        )
        self._url_paths = {path: pool for pool in pools for path in getattr(pool.spec, "url_paths", ())}

    def pool(self, function_name: str) -> FunctionPool | None:
        """A function by name, ARN or partial ARN (`…:function:<name>[:qualifier]`), as Invoke accepts."""
        if ":function:" in function_name:
            function_name = function_name.split(":function:", 1)[1]
        return self._by_name.get(function_name.split(":", 1)[0])

    def match(self, method: str, path: str) -> Match | None:
        if path in self._url_paths:
            return Match(pool=self._url_paths[path], route=None, path_parameters={}, url_path=path)
        for prefix, pool in self._url_functions:
            if path == prefix or path.startswith(prefix + "/"):
                return Match(pool=pool, route=None, path_parameters={}, url_path=path[len(prefix) :] or "/")
        segments = [part for part in path.split("/") if part]
        best: tuple[tuple[int, ...], Route, FunctionPool, dict[str, str]] | None = None
        for route, pool in self._routes:
            if route.method not in (method, "ANY"):
                continue
            matched = match_route(route, segments)
            if matched and (best is None or matched[0] < best[0]):
                best = (matched[0], route, pool, matched[1])
        if best is None:
            return None
        return Match(pool=best[2], route=best[1], path_parameters=best[3])
