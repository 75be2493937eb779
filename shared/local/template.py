"""Reads template.yaml: the local stack's only source for functions, routes,
environment, tables and API Gateway's own error responses.

The template is read as CloudFormation reads it after the AWS::LanguageExtensions
transform: its Fn::ForEach loops expanded (expand_language_extensions). Only the
intrinsics the template uses in function environments are resolved; anything else
fails loudly, naming the value, rather than guessing.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
LOCAL_STACK_NAME = "conduit-local"
LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "123456789012"


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML loader that turns short-form intrinsics (!Ref, !Sub, …) into their long form."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template_source(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as written (Fn::ForEach loops included)."""
    return yaml.load(path.read_text(), Loader=_CloudFormationLoader)  # noqa: S506 - SafeLoader subclass


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as CloudFormation processes it: Fn::ForEach loops expanded."""
    return expand_language_extensions(load_template_source(path))


# --- AWS::LanguageExtensions ------------------------------------------------
LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
FOR_EACH_PREFIX = "Fn::ForEach::"
_LOOP_SECTIONS = ("Conditions", "Resources", "Outputs")  # where CloudFormation allows Fn::ForEach


def transforms(doc: Mapping[str, Any]) -> list[str]:
    """The template's Transform: one name or a list of them (applied in that order)."""
    transform = doc.get("Transform") or []
    return [transform] if isinstance(transform, str) else list(transform)


def expand_language_extensions(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with every Fn::ForEach of Conditions, Resources and Outputs expanded (nested loops
    and loops inside properties included), as the AWS::LanguageExtensions transform does:

        Fn::ForEach::<LoopName>: [<Identifier>, <Collection>, {<OutputKey>: <OutputValue>}]

    Each value of the collection (a list, or a Ref to a CommaDelimitedList parameter, which
    is read at its default) gives one copy of the fragment where `${Identifier}`, and
    `&{Identifier}` (the value without non-alphanumeric characters), are replaced in keys
    and in Fn::Sub strings, and `Ref: Identifier` becomes the value. A Fn::Sub left without
    variables becomes its string (so `Ref: !Sub ${Name}Function` names a resource), and a
    Fn::FindInMap with literal keys its value. This is what cfn-lint's transform does
    (make lint); tests/test_template.py compares the two. Outside loops nothing changes.
    A loop without the transform in Transform, or two copies with one key, fail loudly."""
    if not any(_has_loops(doc.get(section)) for section in _LOOP_SECTIONS):
        return doc
    if LANGUAGE_EXTENSIONS not in transforms(doc):
        raise ValueError(f"template.yaml: Fn::ForEach needs Transform {LANGUAGE_EXTENSIONS}")
    expanded = dict(doc)
    for section in _LOOP_SECTIONS:
        if section in doc:
            expanded[section] = _expand(doc[section], {}, doc)
    return expanded


def _has_loops(value: Any) -> bool:
    if isinstance(value, dict):
        return any(str(key).startswith(FOR_EACH_PREFIX) or _has_loops(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_loops(item) for item in value)
    return False


def _expand(value: Any, bindings: dict[str, str], doc: Mapping[str, Any]) -> Any:
    if not bindings and not _has_loops(value):
        return value  # outside every loop, the template stays as written
    if isinstance(value, list):
        return [_expand(item, bindings, doc) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((name, argument),) = value.items()
        if name == "Ref":
            reference = _expand(argument, bindings, doc)
            if isinstance(reference, str) and reference in bindings:
                return bindings[reference]
            return {"Ref": reference}
        if name == "Fn::Sub":
            if isinstance(argument, str):
                text = _substitute(argument, bindings)
                return text if not _has_sub_variables(text) else {"Fn::Sub": text}
            text, variables = argument
            text = _substitute(text, bindings)
            if not _has_sub_variables(text):
                return text
            return {"Fn::Sub": [text, _expand(variables, bindings, doc)]}
        if name == "Fn::FindInMap":
            return _find_in_map(_expand(argument, bindings, doc), doc)
    expanded: dict[str, Any] = {}
    for key, item in value.items():
        if str(key).startswith(FOR_EACH_PREFIX):
            copies = _for_each(key, item, bindings, doc)
        else:
            copies = {_substitute(key, bindings): _expand(item, bindings, doc)}
        for copy_key, copied in copies.items():
            if copy_key in expanded:
                raise ValueError(f"template.yaml: {key} makes a second {copy_key}")
            expanded[copy_key] = copied
    return expanded


def _for_each(loop: str, arguments: Any, bindings: dict[str, str], doc: Mapping[str, Any]) -> dict[str, Any]:
    if not (isinstance(arguments, list) and len(arguments) == 3 and isinstance(arguments[2], dict)):
        raise ValueError(f"template.yaml: {loop} must be [Identifier, Collection, {{OutputKey: OutputValue}}]")
    identifier, collection, fragment = arguments
    expanded: dict[str, Any] = {}
    for item in _collection(loop, _expand(collection, bindings, doc), doc):
        for key, copied in _expand(fragment, {**bindings, identifier: item}, doc).items():
            if key in expanded:
                raise ValueError(f"template.yaml: {loop} makes a second {key}")
            expanded[key] = copied
    return expanded


def _find_in_map(arguments: list[Any], doc: Mapping[str, Any]) -> Any:
    """A Fn::FindInMap whose keys the loop made literal is resolved, as the transform does
    (its DefaultValue when the mapping lacks them); any other stays for CloudFormation."""
    mapping, first, second, *default = arguments
    if not all(isinstance(key, str) for key in (mapping, first, second)):
        return {"Fn::FindInMap": arguments}
    value = doc.get("Mappings", {}).get(mapping, {}).get(first, {}).get(second)
    if value is not None:
        return copy.deepcopy(value)
    if default and isinstance(default[0], dict) and "DefaultValue" in default[0]:
        return default[0]["DefaultValue"]
    raise ValueError(f"template.yaml: Fn::FindInMap {arguments!r} finds nothing in Mappings")


def _collection(loop: str, collection: Any, doc: Mapping[str, Any]) -> list[str]:
    if isinstance(collection, list) and all(isinstance(item, (str, int, float)) for item in collection):
        return [str(item) for item in collection]
    if isinstance(collection, dict) and set(collection) == {"Ref"}:
        parameter = doc.get("Parameters", {}).get(collection["Ref"], {})
        if parameter.get("Type") == "CommaDelimitedList" and "Default" in parameter:
            return [item.strip() for item in str(parameter["Default"]).split(",")]
    raise ValueError(f"template.yaml: the collection of {loop} is not expanded locally: {collection!r}")


def _substitute(text: Any, bindings: Mapping[str, str]) -> Any:
    if not isinstance(text, str):
        return text
    for identifier, item in bindings.items():
        text = text.replace(f"${{{identifier}}}", item)
        text = text.replace(f"&{{{identifier}}}", re.sub(r"[^0-9A-Za-z]+", "", item))
    return text


def _has_sub_variables(text: str) -> bool:
    return re.search(r"\$\{(?!!)[^}]+\}", text) is not None


@dataclass(frozen=True)
class Route:
    method: str  # upper case, or ANY
    path: str  # API Gateway resource path, e.g. /vault/sites/{siteId} or /auth/{proxy+}


@dataclass
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    layer_dirs: list[Path]
    environment: dict[str, str]
    timeout: int
    memory: int
    routes: list[Route] = field(default_factory=list)
    url_prefix: str | None = None  # where a Function URL function is mounted locally
    url_paths: tuple[str, ...] = ()  # or: the exact paths it answers locally, passed through unchanged
    response_stream: bool = False  # a Function URL with InvokeMode RESPONSE_STREAM: chunks reach the client as they come


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    body: str


@dataclass(frozen=True)
class EventRule:
    """An EventBridgeRule event of a function: deliver events matching `pattern` to it."""

    function: str
    pattern: dict[str, Any]


class Template:
    def __init__(self, path: Path = TEMPLATE_PATH, environ: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.source = load_template_source(path)  # as written: Fn::ForEach loops included
        self.doc = expand_language_extensions(self.source)  # as CloudFormation processes it
        self.resources: dict[str, Any] = self.doc.get("Resources", {})
        self.parameters: dict[str, Any] = self.doc.get("Parameters", {})
        # Where the local stack serves Function URLs (set once its port is bound).
        self.local_url = "http://127.0.0.1"
        self.parameter_values = self._parameter_values(environ or {})

    def _parameter_values(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Each parameter's default, overridden by the knob that carries it: the environment
        variable a function sets from `!Ref <Parameter>` (RUN_TIMEOUT_SECONDS → RunTimeoutSeconds).
        So a knob reaches everything built from the parameter, state machines included."""
        values = {name: str(spec.get("Default", "")) for name, spec in self.parameters.items()}
        function_globals = self.doc.get("Globals", {}).get("Function", {})
        variable_sets = [function_globals.get("Environment", {}).get("Variables", {})]
        variable_sets += [
            res.get("Properties", {}).get("Environment", {}).get("Variables", {})
            for res in self._of_type("AWS::Serverless::Function").values()
        ]
        for variables in variable_sets:
            for variable, value in variables.items():
                if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in values and variable in environ:
                    values[value["Ref"]] = environ[variable]
        return values

    # --- intrinsics -------------------------------------------------------
    def physical_id(self, logical_id: str) -> str:
        if logical_id in self.parameters:
            return self.parameter_values[logical_id]
        pseudo = {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::StackName": LOCAL_STACK_NAME,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if logical_id in pseudo:
            return pseudo[logical_id]
        if logical_id in self.resources:
            # Locally every named resource is called by its logical id; a KMS key by an alias of it.
            resource_type = self.resources[logical_id].get("Type")
            if resource_type == "AWS::KMS::Key":
                return f"alias/{logical_id}"
            if resource_type == "AWS::Serverless::StateMachine":  # Ref of a state machine is its ARN
                return f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:stateMachine:{self.name_of(logical_id)}"
            return self.name_of(logical_id)
        raise ValueError(f"template.yaml: !Ref {logical_id} names nothing the local stack knows")

    def name_of(self, logical_id: str) -> str:
        """A resource's physical name: its `Name` property where the template sets one, else its logical id."""
        name = self.resources[logical_id].get("Properties", {}).get("Name")
        return self.resolve(name) if name is not None else logical_id

    def attribute(self, logical_id: str, attribute: str) -> str:
        if logical_id.endswith("Url") and attribute == "FunctionUrl":
            # SAM's <Function>Url resource; locally the function is mounted at its LocalUrlPrefix.
            function = self.resources.get(logical_id[: -len("Url")], {})
            prefix = function.get("Metadata", {}).get("LocalUrlPrefix")
            if prefix:
                return f"{self.local_url}{prefix.rstrip('/')}/"
        resource_type = self.resources.get(logical_id, {}).get("Type", "")
        arns = {
            "AWS::Serverless::Function": f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{logical_id}",
            "AWS::IAM::Role": f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/{logical_id}",
            "AWS::Scheduler::ScheduleGroup": f"arn:aws:scheduler:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:schedule-group/{self.name_of(logical_id)}",
        }
        if attribute == "Arn" and resource_type in arns:
            return arns[resource_type]
        service = {
            "AWS::DynamoDB::Table": "dynamodb",
            "AWS::KMS::Key": "kms",
            "AWS::SecretsManager::Secret": "secretsmanager",
        }.get(resource_type)
        if attribute == "Arn" and service:
            kind = {"dynamodb": "table", "kms": "key", "secretsmanager": "secret"}[service]
            return f"arn:aws:{service}:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:{kind}/{logical_id}"
        raise ValueError(f"template.yaml: !GetAtt {logical_id}.{attribute} is not resolved locally")

    def resolve(self, value: Any) -> str:
        if isinstance(value, (str, int, float, bool)):
            return str(value).lower() if isinstance(value, bool) else str(value)
        if isinstance(value, dict) and len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Ref":
                return self.physical_id(argument)
            if name == "Fn::GetAtt":
                return self.attribute(*argument)
            if name == "Fn::Sub" and isinstance(argument, str):
                return re.sub(r"\$\{([^}!]+)\}", lambda m: self._sub_variable(m.group(1)), argument)
            if name == "Fn::Sub" and isinstance(argument, list) and len(argument) == 2:
                text, variables = argument
                values = {variable: self.resolve(value) for variable, value in variables.items()}
                return re.sub(
                    r"\$\{([^}!]+)\}",
                    lambda m: values[m.group(1)] if m.group(1) in values else self._sub_variable(m.group(1)),
                    text,
                )
            if name == "Fn::Join":
                separator, parts = argument
                return separator.join(self.resolve(part) for part in parts)
        raise ValueError(f"template.yaml: cannot resolve {value!r} locally")

    def _sub_variable(self, name: str) -> str:
        if "." in name and not name.startswith("AWS::"):
            return self.attribute(*name.split(".", 1))
        return self.physical_id(name)

    # --- what the local stack runs ---------------------------------------
    def _of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.resources.items() if res.get("Type") == resource_type}

    def tables(self) -> dict[str, dict[str, Any]]:
        return {name: res["Properties"] for name, res in self._of_type("AWS::DynamoDB::Table").items()}

    def keys(self) -> list[str]:
        return list(self._of_type("AWS::KMS::Key"))

    def secrets(self) -> dict[str, dict[str, Any]]:
        return {name: res["Properties"] for name, res in self._of_type("AWS::SecretsManager::Secret").items()}

    def functions(self) -> list[FunctionSpec]:
        function_globals = self.doc.get("Globals", {}).get("Function", {})
        layers = {
            name: self.path.parent / res["Properties"]["ContentUri"]
            for name, res in self._of_type("AWS::Serverless::LayerVersion").items()
        }
        specs = []
        for name, resource in self._of_type("AWS::Serverless::Function").items():
            props = {**function_globals, **resource.get("Properties", {})}
            variables = {
                **function_globals.get("Environment", {}).get("Variables", {}),
                **resource.get("Properties", {}).get("Environment", {}).get("Variables", {}),
            }
            routes = [
                Route(method=event["Properties"]["Method"].upper(), path=event["Properties"]["Path"])
                for event in props.get("Events", {}).values()
                if event.get("Type") == "Api"
            ]
            url_prefix, url_paths = None, ()
            if "FunctionUrlConfig" in props:
                url_prefix = resource.get("Metadata", {}).get("LocalUrlPrefix")
                # LocalUrlPaths: a function that serves several paths of its URL's origin (/mcp and
                # its /.well-known documents) is mounted locally at exactly those, path unchanged.
                url_paths = tuple(resource.get("Metadata", {}).get("LocalUrlPaths") or ())
                if not url_prefix and not url_paths:
                    raise ValueError(f"template.yaml: {name} has a Function URL but no Metadata.LocalUrlPrefix")
            # SAM adds a function's Layers to the global ones; a layer by ARN (the Lambda Web
            # Adapter) exists only on AWS, where it plays the part the local gateway plays here.
            layer_refs = [*function_globals.get("Layers", []), *resource.get("Properties", {}).get("Layers", [])]
            specs.append(
                FunctionSpec(
                    logical_id=name,
                    code_dir=self.path.parent / props["CodeUri"],
                    # Behind the adapter, Handler is its startup script; Metadata.LocalHandler names the
                    # Python handler that script serves, which the local stack calls directly.
                    handler=resource.get("Metadata", {}).get("LocalHandler") or props["Handler"],
                    layer_dirs=[layers[layer["Ref"]] for layer in layer_refs if isinstance(layer, dict) and "Ref" in layer],
                    environment={key: self.resolve(value) for key, value in variables.items()},
                    timeout=int(props.get("Timeout", 3)),
                    memory=int(props.get("MemorySize", 128)),
                    routes=routes,
                    url_prefix=url_prefix,
                    url_paths=url_paths,
                    response_stream=props.get("FunctionUrlConfig", {}).get("InvokeMode") == "RESPONSE_STREAM",
                )
            )
        return specs

    def state_machines(self) -> dict[str, str]:
        """Each state machine's definition as deployed: its DefinitionUri file with
        DefinitionSubstitutions applied (SAM substitutes `${Name}` textually)."""
        machines = {}
        for logical_id, resource in self._of_type("AWS::Serverless::StateMachine").items():
            props = resource["Properties"]
            substitutions = {key: self.resolve(value) for key, value in props.get("DefinitionSubstitutions", {}).items()}
            text = (self.path.parent / props["DefinitionUri"]).read_text()
            machines[self.name_of(logical_id)] = re.sub(r"\$\{(\w+)\}", lambda m: substitutions[m.group(1)], text)
        return machines

    def schedule_groups(self) -> list[str]:
        return [self.name_of(logical_id) for logical_id in self._of_type("AWS::Scheduler::ScheduleGroup")]

    def event_rules(self) -> list[EventRule]:
        return [
            EventRule(function=name, pattern=self._resolve_pattern(event["Properties"]["Pattern"]))
            for name, resource in self._of_type("AWS::Serverless::Function").items()
            for event in resource.get("Properties", {}).get("Events", {}).values()
            if event.get("Type") == "EventBridgeRule"
        ]

    def _resolve_pattern(self, pattern: Any) -> Any:
        if isinstance(pattern, list):
            return [self._resolve_pattern(value) for value in pattern]
        if isinstance(pattern, dict) and not (len(pattern) == 1 and next(iter(pattern)) in ("Ref", "Fn::Sub", "Fn::GetAtt", "Fn::Join")):
            return {key: self._resolve_pattern(value) for key, value in pattern.items()}
        return self.resolve(pattern)

    def gateway_responses(self) -> dict[str, GatewayResponse]:
        responses: dict[str, GatewayResponse] = {}
        for api in self._of_type("AWS::Serverless::Api").values():
            for kind, config in api["Properties"].get("GatewayResponses", {}).items():
                responses[kind] = GatewayResponse(
                    status=int(config["StatusCode"]),
                    body=config["ResponseTemplates"]["application/json"],
                )
        return responses
