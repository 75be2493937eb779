"""Site manifests (Servio / WebMCP and the CMS plugins' documents, API.md §6 and §11): discovery,
validation with the plugins' tolerances, the call target, tool naming.

Discovery: a URL with a path or a query is the manifest itself; a bare origin is looked up at the
standard paths, then at the paths the CMS plugins publish (`DISCOVERY`, in that order).

Call target (§11), decided once here and stored with the site as `callShape` + `callTarget`:
- `usage.tools_endpoint` wins over `server.url`. With a `{tool_name}` placeholder (anywhere, a query
  string included) it is shape "template": the name replaces the placeholder, the arguments are the
  body. Without it, shape "named": `POST tools_endpoint` with `{"name", "arguments"}`;
- otherwise shape "rest": `POST {server.url}/tools/{name}` with the arguments as the body.

Tolerance (§11): PHP's `[]` for `{}` wherever an object belongs, a numeric `version`, the MCP
spelling `inputSchema`, a tool without description (its name describes it), `auth.type: "none"`.
A tool still invalid is left out and reported in the site's `warnings`; the manifest is refused
(MANIFEST_INVALID, every problem in `details`) only for problems of the manifest itself or when no
valid tool remains. Hostile documents (deep nesting, non-finite or huge numbers, remote `$ref`s,
thousands of tools) end the same way, never in a fault.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conduit.platform import safe_json
from conduit.platform.errors import ConduitError
from conduit.net.outbound import (
    GuardedClient,
    OutboundError,
    OutboundRefused,
    OutboundTooLarge,
    check_url_syntax,
)
from conduit.platform.settings import get_settings

# Bare origins are looked up at these paths, in this order (API.md §6, §11): the format's own
# paths first, then each plugin's. WordPress's `?rest_route=` forms (sites without pretty
# permalinks) come last: on any other CMS they reach the home page, never a manifest.
STANDARD_PATHS = ("/.well-known/servio.json", "/servio.json", "/api/servio/manifest", "/.well-known/webmcp.json")
PLUGIN_PATHS = (
    "/api/aiconnect-manifest",  # XenForo AI Connect
    "/wp-json/goldt-webmcp-bridge/v1/manifest",  # WordPress WebMCP Bridge
    "/wp-json/ai-connect/v1/manifest",  # WordPress AI Connect (older plugin)
    "/api/ai-connect/v1/manifest",  # Drupal AI Connect
    "/?rest_route=/goldt-webmcp-bridge/v1/manifest",  # WordPress WebMCP Bridge, plain permalinks
    "/?rest_route=/ai-connect/v1/manifest",  # WordPress AI Connect, plain permalinks
)
DISCOVERY = STANDARD_PATHS + PLUGIN_PATHS
# Every candidate of a bare origin must fit in API Gateway's 29 s: each fetch gets at most
# FETCH_SECONDS, and discovery as a whole DISCOVERY_SECONDS (candidates past it are not tried).
FETCH_SECONDS = 5.0
DISCOVERY_SECONDS = 20.0

MAX_MANIFEST_BYTES = 256 * 1024  # the tools are stored in one DynamoDB item (400 KB)
MAX_TOOLS = 100  # more than any model takes in one request; the rest are left out with a warning
MAX_DEPTH = 32  # nesting of the document and of each tool's schema
MAX_NUMBER = 2**53  # beyond this, JSON numbers lose precision in most clients
MAX_PREFIXED_NAME = 64
TOOL_NAME_PLACEHOLDER = "{tool_name}"
OOB_REDIRECT = "urn:ietf:wg:oauth:2.0:oob"
DEFAULT_CLIENT_ID = "conduit"
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_-]")

CallShape = Literal["rest", "named", "template"]
AuthType = Literal["bearer", "oauth2", "none"]
# Stored call shapes of older versions, read as their current names.
LEGACY_CALL_SHAPES = {"mcp": "named"}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")  # manifests carry fields we do not use (brief, verification, …)


class ToolModel(_Lenient):
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(min_length=1, max_length=4000)
    input_schema: dict[str, Any]


class ServerModel(_Lenient):
    url: str = Field(min_length=1, max_length=2048)


class UsageModel(_Lenient):
    tools_endpoint: str | None = Field(None, min_length=1, max_length=2048)


class AuthModel(_Lenient):
    type: AuthType = "bearer"
    authorization_url: str | None = Field(None, max_length=2048)
    token_url: str | None = Field(None, max_length=2048)
    scopes: list[str] | dict[str, Any] | None = None
    client_id: str | None = Field(None, min_length=1, max_length=256)
    registered_clients: list[Any] | dict[str, Any] | None = None
    redirect_uri: str | None = Field(None, max_length=2048)
    redirect_uris: list[str] | None = None
    pkce_required: bool | None = None
    code_challenge_method: str | None = Field(None, max_length=32)


class ManifestModel(_Lenient):
    """The manifest without its tools: they are checked one by one (`_tool`)."""

    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=64)
    description: str | None = Field(None, max_length=4000)
    server: ServerModel | None = None
    usage: UsageModel | None = None
    auth: AuthModel | None = None


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
    call_shape: CallShape
    call_target: str  # server.url (rest) or usage.tools_endpoint (named, template)
    auth_type: AuthType
    authorization_url: str | None
    token_url: str | None
    scopes: list[str]
    client_id: str | None  # auth.client_id as published
    tools: tuple[Tool, ...]
    registered_clients: tuple[tuple[str, str], ...] = ()  # (client id, display name)
    redirect_uris: tuple[str, ...] = ()
    code_challenge_method: str | None = None
    warnings: tuple[dict[str, str], ...] = field(default=())  # [{tool, message}]: tools left out


def _detail(field_name: str, message: str) -> dict[str, str]:
    return {"field": field_name, "message": message}


def _invalid(details: list[dict[str, str]]) -> ConduitError:
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
    more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
    return ConduitError("MANIFEST_INVALID", f"The manifest is invalid: {summary}{more}", details=details)


# --- hostile structure ------------------------------------------------------------------------


def _structure_problem(value: Any, max_depth: int) -> str | None:
    """Why a parsed JSON value cannot be used safely (too deep, absurd numbers), without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, (dict, list)):
            if depth > max_depth:
                return f"is nested more than {max_depth} levels deep"
            children = current.values() if isinstance(current, dict) else current
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(current, float) and not math.isfinite(current):
            return "holds a number that is not finite"
        elif isinstance(current, (int, float)) and not isinstance(current, bool) and abs(current) > MAX_NUMBER:
            return f"holds a number beyond ±2^53 ({str(current)[:20]}…)"
    return None


# --- tolerance (§11) -------------------------------------------------------------------------

# Keywords whose value is an object of schemas, and keywords whose value is one schema: where PHP's
# json_encode writes `[]` for an empty object.
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_VALUES = (
    "items", "additionalProperties", "additionalItems", "unevaluatedItems", "unevaluatedProperties",
    "contains", "propertyNames", "not", "if", "then", "else",
)  # fmt: skip
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")


def _object_if_empty_array(value: Any) -> Any:
    return {} if value == [] else value


def _tolerant_schema(schema: Any) -> Any:
    """A copy of a schema with `[]` read as `{}` wherever an object belongs (depth already bounded)."""
    schema = _object_if_empty_array(schema)
    if not isinstance(schema, dict):
        return schema
    fixed = dict(schema)
    for key in _SCHEMA_MAPS:
        if key in fixed:
            value = _object_if_empty_array(fixed[key])
            fixed[key] = {k: _tolerant_schema(v) for k, v in value.items()} if isinstance(value, dict) else value
    for key in _SCHEMA_VALUES:
        if key in fixed:
            fixed[key] = _tolerant_schema(fixed[key])
    for key in _SCHEMA_LISTS:
        if isinstance(fixed.get(key), list):
            fixed[key] = [_tolerant_schema(item) for item in fixed[key]]
    return fixed


def _tolerant_document(document: dict[str, Any]) -> dict[str, Any]:
    fixed = dict(document)
    for key in ("server", "usage", "auth", "capabilities"):
        fixed[key] = _object_if_empty_array(fixed.get(key))
        if fixed[key] is None:
            fixed.pop(key)
    version = fixed.get("version")
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        fixed["version"] = str(version)
    auth = fixed.get("auth")
    if isinstance(auth, dict):
        auth = fixed["auth"] = dict(auth)
        if isinstance(auth.get("type"), str):
            auth["type"] = auth["type"].strip().lower()
        for key in ("scopes", "registered_clients", "client_id", "redirect_uri", "redirect_uris"):
            if auth.get(key) in ([], "", {}):
                auth[key] = None
    return fixed


def _tool_label(raw: Any, index: int) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return name[:128] if isinstance(name, str) and name else f"#{index}"


def _tool(raw: Any, field_prefix: str) -> tuple[Tool | None, list[dict[str, str]]]:
    """One tool, tolerantly read, or its problems (fields relative to the manifest)."""
    if not isinstance(raw, dict):
        return None, [_detail(field_prefix, "must be an object")]
    problem = _structure_problem(raw, MAX_DEPTH)
    if problem:
        return None, [_detail(field_prefix, problem)]
    raw = dict(raw)
    if "input_schema" not in raw and "inputSchema" in raw:
        raw["input_schema"] = raw.pop("inputSchema")
    if raw.get("description") in (None, "") and isinstance(raw.get("name"), str):
        raw["description"] = raw["name"]
    raw["input_schema"] = _tolerant_schema(raw.get("input_schema"))
    try:
        model = ToolModel.model_validate(raw)
    except ValidationError as error:
        return None, [
            _detail(".".join([field_prefix, *(str(part) for part in e["loc"])]), e["msg"]) for e in error.errors()
        ]
    problems = _schema_problems(f"{field_prefix}.input_schema", model.input_schema)
    if problems:
        return None, problems
    return Tool(model.name, model.description, model.input_schema), []


def _schema_problems(field_name: str, schema: dict[str, Any]) -> list[dict[str, str]]:
    from conduit.platform.json_schemas import schema_problems  # jsonschema only where manifests are read (~40 ms of import)

    # Only references inside the schema itself are followed (json_schemas.py): nothing a manifest
    # names is fetched except its call and OAuth URLs. A reference elsewhere leaves the tool out.
    problems = [_detail(f"{field_name}.{path}" if path else field_name, message) for path, message in schema_problems(schema)]
    if not problems and schema.get("type", "object") != "object":
        problems.append(_detail(f"{field_name}.type", "must be \"object\": tools take named arguments"))
    return problems


def _scopes(scopes: list[str] | dict[str, Any] | None) -> list[str]:
    """Scopes are published as an array or as an object keyed by scope."""
    if scopes is None:
        return []
    return [str(scope) for scope in (scopes if isinstance(scopes, list) else scopes.keys())]


def _registered_clients(registered_clients: Any) -> tuple[tuple[str, str], ...]:
    """`registered_clients` as (id, display name): an object keyed by id (the plugins'), or a list
    of ids or of objects with `client_id` (and `name`)."""
    if isinstance(registered_clients, dict):
        return tuple((str(key), str(value) if isinstance(value, str) else "") for key, value in registered_clients.items())
    found = []
    for entry in registered_clients or []:
        if isinstance(entry, str) and entry:
            found.append((entry, ""))
        elif isinstance(entry, dict) and isinstance(entry.get("client_id"), str) and entry["client_id"]:
            found.append((entry["client_id"], str(entry.get("name") or "")))
    return tuple(found)


def oauth_client_id(manifest: Manifest) -> str | None:
    """The client id Conduit presents to a site (README, "Site OAuth"):
    1. the `SITE_OAUTH_CLIENT_ID` knob, when set;
    2. the manifest's `auth.client_id`;
    3. of `registered_clients`, the one registered for Conduit (its id or name says "conduit");
    4. "conduit" when the manifest names no clients at all.
    None when the site accepts only clients of other products: borrowing one would impersonate it."""
    override = get_settings().site_oauth_client_id
    if override:
        return override
    if manifest.client_id:
        return manifest.client_id
    if not manifest.registered_clients:
        return DEFAULT_CLIENT_ID
    for client_id, name in manifest.registered_clients:
        if "conduit" in client_id.lower() or "conduit" in name.lower():
            return client_id
    return None


def _call_target(model: ManifestModel) -> tuple[CallShape, str, str] | None:
    """(shape, target, field) by §11's rule: usage.tools_endpoint wins over server.url."""
    if model.usage is not None and model.usage.tools_endpoint:
        endpoint = model.usage.tools_endpoint
        shape: CallShape = "template" if TOOL_NAME_PLACEHOLDER in endpoint else "named"
        return shape, endpoint, "usage.tools_endpoint"
    if model.server is not None:
        return "rest", model.server.url, "server.url"
    return None


def parse_manifest(document: Any, client: GuardedClient) -> Manifest:
    """A validated manifest, or MANIFEST_INVALID naming every problem found."""
    if not isinstance(document, dict):
        raise _invalid([_detail("manifest", "must be a JSON object")])
    problems: list[dict[str, str]] = []
    raw_tools, tools_field = document.get("tools"), "tools"
    usage = document.get("usage")
    if raw_tools is None and isinstance(usage, dict) and usage.get("tools") is not None:
        raw_tools, tools_field = usage["tools"], "usage.tools"
    rest = {key: value for key, value in document.items() if key != "tools"}
    if isinstance(usage, dict):
        rest["usage"] = {key: value for key, value in usage.items() if key != "tools"}
    structure = _structure_problem(rest, MAX_DEPTH)
    if structure:
        raise _invalid([_detail("manifest", structure)])

    model: ManifestModel | None = None
    try:
        model = ManifestModel.model_validate(_tolerant_document(rest))
    except ValidationError as error:
        problems.extend(
            _detail(".".join(str(part) for part in e["loc"]) or "manifest", e["msg"]) for e in error.errors()
        )

    tools, warnings, tool_problems = _tools(raw_tools, tools_field, problems)
    if model is None:
        raise _invalid(problems + tool_problems)
    target = _call_target(model)
    if target is None:
        problems.append(_detail("server.url", "a call target is required (server.url or usage.tools_endpoint)"))
        target = ("rest", "", "server.url")
    shape, call_target, target_field = target
    urls = [(target_field, call_target.replace(TOOL_NAME_PLACEHOLDER, "tool"))] if call_target else []
    auth = model.auth or AuthModel()
    if auth.type == "oauth2":
        for field_name, value in (("auth.authorization_url", auth.authorization_url), ("auth.token_url", auth.token_url)):
            if not value:
                problems.append(_detail(field_name, "required for oauth2"))
            else:
                urls.append((field_name, value))
    for field_name, value in urls:
        problem = _url_problem(value, client)
        if problem:
            problems.append(_detail(field_name, problem))
    if problems:
        raise _invalid(problems + tool_problems)
    redirect_uris = [auth.redirect_uri] if auth.redirect_uri else []
    redirect_uris += [uri for uri in auth.redirect_uris or [] if uri not in redirect_uris]
    return Manifest(
        name=model.name,
        version=model.version,
        description=model.description,
        call_shape=shape,
        call_target=call_target,
        auth_type=auth.type,
        authorization_url=auth.authorization_url,
        token_url=auth.token_url,
        scopes=_scopes(auth.scopes),
        client_id=auth.client_id,
        tools=tuple(tools),
        registered_clients=_registered_clients(auth.registered_clients),
        redirect_uris=tuple(redirect_uris),
        code_challenge_method=auth.code_challenge_method,
        warnings=tuple(warnings),
    )


def _tools(
    raw_tools: Any, tools_field: str, problems: list[dict[str, str]]
) -> tuple[list[Tool], list[dict[str, str]], list[dict[str, str]]]:
    """The valid tools, warnings for those left out, and their problems (reported in full when the
    manifest is refused). No valid tool at all is a problem of the manifest."""
    if not isinstance(raw_tools, list) or not raw_tools:
        problems.append(_detail(tools_field, "at least one tool is required" if not raw_tools else "must be an array"))
        return [], [], []
    tools: list[Tool] = []
    warnings: list[dict[str, str]] = []
    tool_problems: list[dict[str, str]] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_tools[:MAX_TOOLS]):
        tool, found = _tool(raw, f"{tools_field}.{index}")
        if tool is not None and tool.name in seen:
            tool, found = None, [_detail(tools_field, f"tool name {tool.name!r} appears more than once")]
        if tool is None:
            tool_problems.extend(found)
            message = "; ".join(f"{d['field']}: {d['message']}" for d in found[:3])
            warnings.append({"tool": _tool_label(raw, index), "message": f"left out: {message}"[:500]})
            continue
        seen.add(tool.name)
        tools.append(tool)
    if len(raw_tools) > MAX_TOOLS:
        warnings.append({"tool": "*", "message": f"only the first {MAX_TOOLS} tools are used; {len(raw_tools) - MAX_TOOLS} left out"})
    if not tools:
        problems.append(_detail(tools_field, "no valid tool: every tool has a problem"))
    return tools, warnings, tool_problems


def _url_problem(url: str, client: GuardedClient) -> str | None:
    """Why a URL in the manifest cannot be used, judged without DNS by the guarded client's own
    rules (`check_url_syntax`); every actual request is checked again, after resolution."""
    try:
        check_url_syntax(url, allow_loopback=client.allow_loopback)
    except OutboundRefused as refused:
        return str(refused)
    return None


# --- discovery ---------------------------------------------------------------------------------


def manifest_candidates(url: str) -> list[str]:
    """A URL with a path or a query is the manifest itself; a bare origin is looked up at DISCOVERY."""
    parsed = httpx.URL(url)
    if parsed.path not in ("", "/") or parsed.query:
        return [url]
    origin = str(parsed.copy_with(path="/", query=None, fragment=None)).rstrip("/")
    return [origin + path for path in DISCOVERY]


def _failure_reason(failure: OutboundError) -> str:
    """A short reason, without the URL (the message names each URL once)."""
    return {
        "OutboundUnavailable": "could not be reached or did not answer in time",
        "OutboundTooManyRedirects": "too many redirects",
    }.get(type(failure).__name__, "refused")


def fetch_manifest(url: str, token: str | None, client: GuardedClient) -> tuple[Manifest, str]:
    """Find, fetch and validate a site's manifest; returns it with the URL it was found at.
    The token goes with the request: sites may protect their manifest."""
    document, found_at = find_document(url, token, client)
    return parse_manifest(document, client), found_at


def find_document(url: str, token: str | None, client: GuardedClient) -> tuple[Any, str]:
    """The first candidate URL that answers 2xx with JSON, parsed, and that URL. Kept apart from
    parsing so that other kinds of document found at a site can be told apart by their caller."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    candidates = manifest_candidates(url)
    discovering = len(candidates) > 1
    deadline = time.monotonic() + DISCOVERY_SECONDS
    tried: list[str] = []
    not_json: list[dict[str, str]] = []
    for candidate in candidates:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tried.append(f"(time ran out before {len(candidates) - len(tried)} more paths)")
            break
        try:
            response = client.request(
                "GET", candidate, headers=headers, max_bytes=MAX_MANIFEST_BYTES, timeout=min(FETCH_SECONDS, remaining)
            )
        except OutboundRefused as refused:
            raise ConduitError("INVALID_URL", str(refused)) from None
        except OutboundTooLarge:
            raise _invalid([_detail("manifest", f"{candidate} is larger than {MAX_MANIFEST_BYTES} bytes")]) from None
        except OutboundError as failure:
            tried.append(f"{candidate} ({_failure_reason(failure)})")
            continue
        if not 200 <= response.status < 300:
            tried.append(f"{candidate} (HTTP {response.status})")
            continue
        try:
            return safe_json.loads(response.content), candidate
        except ValueError as bad:
            if not discovering:
                raise _invalid([_detail("manifest", f"{candidate} did not return valid JSON ({bad})"[:300])]) from None
            tried.append(f"{candidate} (not JSON)")
            # While discovering, a page that is not JSON is not a manifest (a CMS's home page answers
            # `/?rest_route=…` on a site without WordPress): look further. Only one that claims to
            # be JSON is a broken manifest, reported if nothing better is found.
            if "json" in response.headers.get("Content-Type", "").lower():
                not_json.append(_detail("manifest", f"{candidate} did not return valid JSON ({bad})"[:300]))
    if not_json:
        raise _invalid(not_json)
    raise ConduitError("MANIFEST_NOT_FOUND", "No manifest found; tried " + ", ".join(tried))


# --- naming ------------------------------------------------------------------------------------


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
