"""Site manifests (Servio / WebMCP, API.md §6): discovery, validation, tool naming.

Two call shapes exist in the wild and both are accepted:
- documented: `server.url`, each tool called as `POST {server.url}/tools/{name}` with the arguments as body;
- CMS plugins: `usage.tools_endpoint`, called as `POST {tools_endpoint}` with `{"name", "arguments"}`
  (their tools may sit under `usage.tools`).
Every defect found is reported at once in `details` of MANIFEST_INVALID.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conduit.errors import ConduitError
from conduit.outbound import (
    GuardedClient,
    OutboundError,
    OutboundRefused,
    OutboundTooLarge,
)

# Bare origins are looked up at these paths, in this order (API.md §6).
MANIFEST_PATHS = ("/.well-known/servio.json", "/servio.json", "/api/servio/manifest", "/.well-known/webmcp.json")
MAX_MANIFEST_BYTES = 256 * 1024  # the tools are stored in one DynamoDB item (400 KB)
MAX_PREFIXED_NAME = 64
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_-]")
_META_VALIDATOR = Draft202012Validator(Draft202012Validator.META_SCHEMA)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")  # manifests carry fields we do not use (brief, verification, …)


class ToolModel(_Lenient):
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(min_length=1, max_length=4000)
    input_schema: dict[str, Any]


class ServerModel(_Lenient):
    url: str = Field(min_length=1, max_length=2048)


class UsageModel(_Lenient):
    tools_endpoint: str = Field(min_length=1, max_length=2048)
    body_format: str | None = None
    tools: list[ToolModel] | None = None


class AuthModel(_Lenient):
    type: Literal["bearer", "oauth2"] = "bearer"
    authorization_url: str | None = Field(None, max_length=2048)
    token_url: str | None = Field(None, max_length=2048)
    scopes: list[str] | dict[str, Any] | None = None
    registered_clients: Any = None


class ManifestModel(_Lenient):
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=64)
    description: str | None = Field(None, max_length=4000)
    server: ServerModel | None = None
    usage: UsageModel | None = None
    auth: AuthModel | None = None
    tools: list[ToolModel] | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    version: str
    description: str | None
    call_shape: Literal["rest", "mcp"]
    call_target: str  # server.url (rest) or usage.tools_endpoint (mcp)
    auth_type: Literal["bearer", "oauth2"]
    authorization_url: str | None
    token_url: str | None
    scopes: list[str]
    client_id: str | None
    tools: tuple[Tool, ...]


def _detail(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _invalid(details: list[dict[str, str]]) -> ConduitError:
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
    return ConduitError("MANIFEST_INVALID", f"The manifest is invalid: {summary}", details=details)


def _scopes(scopes: list[str] | dict[str, Any] | None) -> list[str]:
    """Scopes are published as an array or as an object keyed by scope."""
    if scopes is None:
        return []
    return [str(scope) for scope in (scopes if isinstance(scopes, list) else scopes.keys())]


def _client_id(registered_clients: Any) -> str | None:
    """`registered_clients` names client ids as strings, objects with client_id, or an object keyed by id."""
    candidates = registered_clients if isinstance(registered_clients, list) else [registered_clients]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate:
            return candidate
        if isinstance(candidate, dict):
            if isinstance(candidate.get("client_id"), str):
                return candidate["client_id"]
            if candidate and all(isinstance(key, str) for key in candidate):
                return next(iter(candidate))
    return None


def _schema_problems(index: int, schema: dict[str, Any]) -> list[dict[str, str]]:
    field = f"tools.{index}.input_schema"
    problems = [
        _detail(field + "".join(f".{part}" for part in error.absolute_path), error.message)
        for error in _META_VALIDATOR.iter_errors(schema)
    ]
    if not problems and schema.get("type", "object") != "object":
        problems.append(_detail(f"{field}.type", "must be \"object\": tools take named arguments"))
    return problems


def parse_manifest(document: Any, client: GuardedClient) -> Manifest:
    """A validated manifest, or MANIFEST_INVALID naming every problem found."""
    try:
        model = ManifestModel.model_validate(document)
    except ValidationError as error:
        raise _invalid(
            [_detail(".".join(str(part) for part in e["loc"]) or "manifest", e["msg"]) for e in error.errors()]
        ) from None
    problems: list[dict[str, str]] = []
    tools = model.tools if model.tools is not None else (model.usage.tools if model.usage else None)
    tools_field = "tools" if model.tools is not None or model.usage is None else "usage.tools"
    if not tools:
        problems.append(_detail("tools", "at least one tool is required"))
    for index, tool in enumerate(tools or []):
        problems.extend(_schema_problems(index, tool.input_schema))
    names = [tool.name for tool in tools or []]
    for duplicate in sorted({name for name in names if names.count(name) > 1}):
        problems.append(_detail(tools_field, f"tool name {duplicate!r} appears more than once"))

    if model.server is not None:
        call_shape, call_target, target_field = "rest", model.server.url, "server.url"
    elif model.usage is not None:
        call_shape, call_target, target_field = "mcp", model.usage.tools_endpoint, "usage.tools_endpoint"
    else:
        call_shape, call_target, target_field = "rest", "", "server.url"
        problems.append(_detail("server.url", "a call target is required (server.url or usage.tools_endpoint)"))
    urls = [(target_field, call_target)] if call_target else []
    auth = model.auth or AuthModel()
    if auth.type == "oauth2":
        for field, value in (("auth.authorization_url", auth.authorization_url), ("auth.token_url", auth.token_url)):
            if not value:
                problems.append(_detail(field, "required for oauth2"))
            else:
                urls.append((field, value))
    for field, value in urls:
        problem = _url_problem(value, client)
        if problem:
            problems.append(_detail(field, problem))
    if problems:
        raise _invalid(problems)
    return Manifest(
        name=model.name,
        version=model.version,
        description=model.description,
        call_shape=call_shape,  # type: ignore[arg-type]
        call_target=call_target,
        auth_type=auth.type,
        authorization_url=auth.authorization_url,
        token_url=auth.token_url,
        scopes=_scopes(auth.scopes),
        client_id=_client_id(auth.registered_clients),
        tools=tuple(Tool(tool.name, tool.description, tool.input_schema) for tool in tools or []),
    )


def _url_problem(url: str, client: GuardedClient) -> str | None:
    """Why a URL in the manifest cannot be used, checked syntactically (no DNS at validation time:
    every actual call is checked again by the guarded client)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "is not a valid URL"
    if parsed.scheme == "https" and parsed.host:
        return None
    if parsed.scheme == "http" and client.allow_loopback and parsed.host in ("127.0.0.1", "localhost", "::1"):
        return None
    return "must be an absolute https:// URL"


def manifest_candidates(url: str) -> list[str]:
    """A URL with a path is the manifest itself; a bare origin is looked up at the standard paths."""
    parsed = httpx.URL(url)
    if parsed.path not in ("", "/"):
        return [url]
    origin = str(parsed.copy_with(path="/", query=None, fragment=None)).rstrip("/")
    return [origin + path for path in MANIFEST_PATHS]


def fetch_manifest(url: str, token: str | None, client: GuardedClient) -> tuple[Manifest, str]:
    """Find, fetch and validate a site's manifest; returns it with the URL it was found at.
    The token goes with the request: sites may protect their manifest."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    tried: list[str] = []
    for candidate in manifest_candidates(url):
        try:
            response = client.request("GET", candidate, headers=headers, max_bytes=MAX_MANIFEST_BYTES)
        except OutboundRefused as refused:
            raise ConduitError("INVALID_URL", str(refused)) from None
        except OutboundTooLarge:
            raise _invalid([_detail("manifest", f"is larger than {MAX_MANIFEST_BYTES} bytes")]) from None
        except OutboundError as failure:
            tried.append(f"{candidate} ({failure})")
            continue
        if not 200 <= response.status < 300:
            tried.append(f"{candidate} (HTTP {response.status})")
            continue
        try:
            document = response.json()
        except ValueError:
            raise _invalid([_detail("manifest", f"{candidate} did not return valid JSON")]) from None
        return parse_manifest(document, client), candidate
    raise ConduitError("MANIFEST_NOT_FOUND", "No manifest found; tried " + ", ".join(tried))


def prefixed_names(domain: str, site_id: str, tool_names: list[str]) -> dict[str, str]:
    """Published tool names: `<domain>_<tool>` with `.`/`-` of the domain and `.` of the tool as `_`,
    only [A-Za-z0-9_-], at most 64 characters. A name that would collide with another tool's or run
    longer gets a short hash of (site, tool): stable whatever else the site publishes."""
    domain_part = re.sub(r"[.\-:]", "_", domain)

    def base(name: str) -> str:
        return _UNSAFE_NAME_CHARACTERS.sub("_", f"{domain_part}_{name.replace('.', '_')}")

    bases = {name: base(name) for name in tool_names}
    counts: dict[str, int] = {}
    for value in bases.values():
        counts[value] = counts.get(value, 0) + 1
    published = {}
    for name, value in bases.items():
        if len(value) > MAX_PREFIXED_NAME or counts[value] > 1:
            suffix = hashlib.sha256(f"{site_id}\0{name}".encode()).hexdigest()[:8]
            value = f"{value[: MAX_PREFIXED_NAME - len(suffix) - 1]}_{suffix}"
        published[name] = value
    return published
