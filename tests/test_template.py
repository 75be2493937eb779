"""template.yaml: lint-clean, least privilege, explicit log groups, every handler present."""

from __future__ import annotations

import os
import subprocess

import pytest

from shared.local.template import Template, expand_language_extensions

from .conftest import ROOT


def test_cfn_lint_is_clean():
    """cfn-lint from the lint virtualenv (`make test` sets it up), which has the SAM translator:
    without it, cfn-lint skips every AWS::Serverless resource."""
    lint = ROOT / ".venv-lint" / "bin"
    check = subprocess.run([lint / "python", "-c", "import samtranslator"], capture_output=True, check=False)
    assert check.returncode == 0, "the lint virtualenv lacks the SAM translator: run `make lint`"
    result = subprocess.run(
        [lint / "cfn-lint", "template.yaml"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _functions(template: Template):
    return {
        name: resource["Properties"]
        for name, resource in template.resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_every_function_runs_python_313_on_arm64_with_the_layer(template):
    function_globals = template.doc["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Layers"] == [{"Ref": "ConduitLayer"}]
    assert template.resources["ConduitLayer"]["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}


def test_the_layer_is_built_for_python_313_on_arm64_with_its_bytecode(tmp_path):
    """What `sam build` runs for the layer (layers/conduit/Makefile), as make would run it: the pinned
    requirements as Python 3.13 arm64 wheels, the package with tiers.json as a file, then bytecode that
    Lambda uses without checking the sources' times (README, Performance)."""
    recipe = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "-C", "layers/conduit", "build-ConduitLayer", f"ARTIFACTS_DIR={tmp_path}"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.replace("\\\n\t", "")  # one line per command
    target = f"{tmp_path}/python"
    install, copy, clean, compile_ = (line for line in recipe.splitlines() if line.startswith(("python3.13 -m pip", "cp ", "find ", "python3.13 -m compileall")))
    assert "--requirement requirements.txt" in install and f'--target "{target}"' in install
    assert "--platform manylinux2014_aarch64" in install and "--python-version 3.13" in install and "--only-binary=:all:" in install
    assert copy == f'cp -RL conduit "{target}/"'  # -L: the tiers.json symlink becomes the file
    assert clean.startswith(f'find "{target}" -name __pycache__')  # no bytecode of a local run ships
    assert compile_.endswith(f'--invalidation-mode unchecked-hash "{target}"')


def test_every_handler_exists(template):
    specs = template.functions()
    assert specs, "template.yaml defines no function"
    for spec in specs:
        module, function = spec.handler.rsplit(".", 1)
        source = (spec.code_dir / f"{module}.py").read_text()
        assert f"{function} = " in source or f"def {function}(" in source, spec.logical_id


def test_the_chat_url_streams_through_the_lambda_web_adapter(template):
    """Python runtimes stream only through an adapter: its layer, its wrapper, its invoke mode, our script."""
    props = template.resources["ChatStreamFunction"]["Properties"]
    assert props["FunctionUrlConfig"]["InvokeMode"] == "RESPONSE_STREAM"
    variables = props["Environment"]["Variables"]
    assert (variables["AWS_LAMBDA_EXEC_WRAPPER"], variables["AWS_LWA_INVOKE_MODE"]) == ("/opt/bootstrap", "response_stream")
    assert any(":layer:LambdaAdapterLayerArm64:" in layer["Fn::Sub"] for layer in props["Layers"] if "Fn::Sub" in layer)
    script = ROOT / props["CodeUri"] / props["Handler"]
    assert os.access(script, os.X_OK) and "conduit.http.stream_server app.lambda_handler" in script.read_text()
    (spec,) = [spec for spec in template.functions() if spec.logical_id == "ChatStreamFunction"]
    assert spec.handler == "app.lambda_handler" and spec.response_stream and [d.name for d in spec.layer_dirs] == ["conduit"]


def test_every_function_has_an_explicit_log_group_with_retention(template):
    for name, props in _functions(template).items():
        log_group = props.get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
        assert log_group, f"{name} has no LoggingConfig.LogGroup"
        group = template.resources[log_group]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def _statements(policies):
    for policy in policies or []:
        if isinstance(policy, dict) and "Statement" in policy:
            yield from policy["Statement"]


@pytest.mark.parametrize("resource_type", ["AWS::Serverless::Function"])
def test_no_wildcard_resources_in_function_policies(template, resource_type):
    for name, props in _functions(template).items():
        for statement in _statements(props.get("Policies")):
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert "*" not in resources, f"{name} grants {statement['Action']} on *"


def test_table_keys_are_what_the_repositories_use(template):
    table = template.tables()["ConduitTable"]
    assert [key["AttributeName"] for key in table["KeySchema"]] == ["PK", "SK"]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "GSI1"
    assert [key["AttributeName"] for key in index["KeySchema"]] == ["GSI1PK", "GSI1SK"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}


def test_gateway_answers_unknown_routes_with_the_error_body(template):
    response = template.gateway_responses()["MISSING_AUTHENTICATION_TOKEN"]
    assert response.status == 404
    assert response.body == '{"error": "Route not found", "code": "NOT_FOUND", "statusCode": 404}'


def test_every_gateway_response_is_formatted_as_the_functions_format_their_errors(template):
    """Byte for byte what error_response writes (json.dumps), so a client sees one format."""
    import json

    from conduit.http.api import error_response
    from conduit.platform.errors import ConduitError

    assert error_response(ConduitError("NOT_FOUND", "Route not found")).body == template.gateway_responses()["MISSING_AUTHENTICATION_TOKEN"].body
    for name, response in template.gateway_responses().items():
        assert response.body == json.dumps(json.loads(response.body)), name


def test_samconfig_has_dev_and_prod():
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for environment in ("dev", "prod"):
        deploy = config[environment]["deploy"]["parameters"]
        assert f"Stage={environment}" in deploy["parameter_overrides"]
        assert deploy["capabilities"] == "CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
        assert deploy["language_extensions"] is True  # SAM CLI expands Fn::ForEach only when told to
    assert config["default"]["global"]["parameters"]["language_extensions"] is True  # build, validate, local


ALARM_LOOP = "Fn::ForEach::FunctionAlarms"  # template.yaml's loop making every function's alarms


def _functions_without_alarms(doc) -> list[str]:
    """The functions of an expanded template lacking <Name>ErrorsAlarm or <Name>ThrottlesAlarm
    (<Name>Function without its suffix) on their own Errors and Throttles metrics."""
    resources = doc["Resources"]
    missing = []
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for metric in ("Errors", "Throttles"):
            alarm = resources.get(f"{name.removesuffix('Function')}{metric}Alarm", {}).get("Properties", {})
            if (alarm.get("Namespace"), alarm.get("MetricName"), alarm.get("Dimensions")) != (
                "AWS/Lambda",
                metric,
                [{"Name": "FunctionName", "Value": {"Ref": name}}],
            ):
                missing.append(name)
                break
    return missing


def test_every_function_has_error_and_throttle_alarms(template):
    """Made by the alarm loop, with the logical ids, properties and descriptions the alarms had
    when they were written out one by one (so a deployed stack keeps and updates nothing)."""
    assert _functions_without_alarms(template.doc) == []
    function_alarms = {
        name: resource["Properties"]
        for name, resource in template.resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm" and resource["Properties"]["Namespace"] == "AWS/Lambda"
    }
    assert len(function_alarms) == 2 * len(_functions(template))
    descriptions = {"Errors": "errors", "Throttles": "throttled invocations"}
    for name, props in function_alarms.items():
        function = props["Dimensions"][0]["Value"]["Ref"]
        assert name == f"{function.removesuffix('Function')}{props['MetricName']}Alarm"
        assert template.resolve(props["AlarmDescription"]) == f"conduit-local: {function} {descriptions[props['MetricName']]}"
        assert {key: value for key, value in props.items() if key not in ("AlarmDescription", "MetricName", "Dimensions")} == {
            "Namespace": "AWS/Lambda",
            "Statistic": "Sum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": "AlarmTopic"}],
        }, name
    table_alarms = {
        resource["Properties"]["MetricName"]
        for resource in template.resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm" and resource["Properties"]["Namespace"] == "AWS/DynamoDB"
    }
    assert table_alarms == {"ReadThrottleEvents", "WriteThrottleEvents"}


def test_the_alarm_loop_lists_every_function_and_nothing_else(template):
    """The loop's list, as written, is the template's functions (<Name>Function) by <Name>."""
    _, listed, _ = template.source["Resources"][ALARM_LOOP]
    assert all(name.endswith("Function") for name in _functions(template))
    functions = {name.removesuffix("Function") for name in _functions(template)}
    assert not functions - set(listed), f"add {sorted(functions - set(listed))} to {ALARM_LOOP} in template.yaml"
    assert not set(listed) - functions, f"{ALARM_LOOP} lists {sorted(set(listed) - functions)}: no such function"


def test_a_function_added_but_not_to_the_alarm_loop_has_no_alarms(template):
    """The check above, on template.yaml with one more function: without it in the loop's list
    the function has no alarm and the check names it; with it, both alarms exist."""
    import copy

    source = copy.deepcopy(template.source)
    source["Resources"]["ReportsFunction"] = copy.deepcopy(source["Resources"]["PlatformFunction"])
    assert _functions_without_alarms(expand_language_extensions(source)) == ["ReportsFunction"]
    source["Resources"][ALARM_LOOP][1].append("Reports")
    expanded = expand_language_extensions(source)
    assert _functions_without_alarms(expanded) == []
    assert expanded["Resources"]["ReportsThrottlesAlarm"]["Properties"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "ReportsFunction"}}
    ]


def test_the_run_state_machine_is_one_definition_for_aws_and_local(template):
    """shared/statemachines/agent_run.asl.json, with DefinitionSubstitutions applied as SAM does."""
    import json

    (resource,) = [r for r in template.resources.values() if r["Type"] == "AWS::Serverless::StateMachine"]
    assert resource["Properties"]["Type"] == "STANDARD"
    assert resource["Properties"]["DefinitionUri"] == "shared/statemachines/agent_run.asl.json"
    (definition,) = template.state_machines().values()
    machine = json.loads(definition)
    assert machine["TimeoutSeconds"] == int(template.parameter_values["RunTimeoutSeconds"])

    def tasks(states):
        for name, state in states.items():
            if state["Type"] == "Task":
                yield name, state
            if state["Type"] == "Map":
                yield from tasks(state["ItemProcessor"]["States"])

    for name, state in tasks(machine["States"]):
        assert state["Parameters"]["FunctionName"].endswith(":function:RunStepsFunction"), name
        (retry, *_) = state["Retry"]
        assert retry["JitterStrategy"] == "FULL" and retry["BackoffRate"] > 1, name
    for name in ("Prepare", "ModelTurn", "ToolCalls"):
        assert machine["States"][name]["Catch"][0]["Next"] == "RecordFailure"


def test_the_run_state_machine_has_failure_alarms(template):
    metrics = {
        resource["Properties"]["MetricName"]
        for resource in template.resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm" and resource["Properties"]["Namespace"] == "AWS/States"
    }
    assert metrics == {"ExecutionsFailed", "ExecutionsTimedOut"}


def test_model_provider_keys_are_secrets_only_the_model_callers_may_read(template):
    resources = template.doc["Resources"]
    for secret in ("OpenAiApiKeySecret", "AnthropicApiKeySecret"):
        assert resources[secret]["Type"] == "AWS::SecretsManager::Secret"
    assert not {"OpenAiApiKey", "AnthropicApiKey"} & set(template.doc["Parameters"])  # no key in plain text
    readers = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        statements = [s for policy in resource["Properties"].get("Policies", []) for s in policy.get("Statement", [])]
        granted = [s.get("Resource") for s in statements if s.get("Action") == "secretsmanager:GetSecretValue"]
        reads = any({"Ref": "OpenAiApiKeySecret"} in (r if isinstance(r, list) else [r]) for r in granted)
        readers[name] = reads
        assert reads == ("OPENAI_API_KEY_ID" in variables), name  # the functions told the secret, and only they
        if reads:
            assert variables["OPENAI_API_KEY"] == "" and variables["ANTHROPIC_API_KEY_ID"] == {"Ref": "AnthropicApiKeySecret"}
    assert {name for name, reads in readers.items() if reads} == {"ChatStreamFunction", "RunStepsFunction"}


# --- AWS::LanguageExtensions: the local reader expands Fn::ForEach as CloudFormation does ---------


def test_for_each_expands_as_the_language_extensions_transform_does():
    """Nested loops, ${} and &{} in keys and Fn::Sub, Ref of the identifier, a Fn::Sub naming a
    resource, a Fn::FindInMap made literal by the loop, and a loop in Outputs and Conditions."""
    doc = {
        "Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"],
        "Parameters": {"Sites": {"Type": "CommaDelimitedList", "Default": "a.example, b.example"}},
        "Mappings": {"Words": {"Red": {"Text": "red things"}, "Blue": {"Text": "blue things"}}},
        "Conditions": {"Fn::ForEach::IsColour": ["Colour", ["Red"], {"Is${Colour}": {"Fn::Equals": [{"Ref": "Colour"}, "Red"]}}]},
        "Resources": {
            "Kept": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": {"Fn::Sub": "${AWS::StackName}-kept"}}},
            "Fn::ForEach::Things": [
                "Thing",
                ["Lamp", "Desk"],
                {
                    "Fn::ForEach::Colours": [
                        "Colour",
                        ["Red", "Blue"],
                        {
                            "${Thing}${Colour}": {
                                "Type": "AWS::SNS::Topic",
                                "Properties": {
                                    "DisplayName": {
                                        "Fn::Sub": [
                                            "${AWS::StackName}: ${Name} ${Text}",
                                            {"Name": {"Fn::Sub": "${Thing}Function"}, "Text": {"Fn::FindInMap": ["Words", {"Ref": "Colour"}, "Text"]}},
                                        ]
                                    },
                                    "TopicName": {"Ref": "Colour"},
                                    "Target": {"Ref": {"Fn::Sub": "${Thing}Function"}},
                                    "Other": {"Ref": "Kept"},
                                },
                            }
                        },
                    ]
                },
            ],
            "Fn::ForEach::Sites": ["Site", {"Ref": "Sites"}, {"Site&{Site}": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": {"Ref": "Site"}}}}],
        },
        "Outputs": {"Fn::ForEach::Out": ["Thing", ["Lamp"], {"${Thing}Arn": {"Value": {"Fn::GetAtt": [{"Fn::Sub": "${Thing}Red"}, "TopicArn"]}}}]},
    }
    expanded = expand_language_extensions(doc)
    resources = expanded["Resources"]
    assert list(resources) == ["Kept", "LampRed", "LampBlue", "DeskRed", "DeskBlue", "Siteaexample", "Sitebexample"]
    assert resources["Kept"] is doc["Resources"]["Kept"]  # outside the loops nothing changes
    assert resources["DeskBlue"]["Properties"] == {
        "DisplayName": {"Fn::Sub": ["${AWS::StackName}: ${Name} ${Text}", {"Name": "DeskFunction", "Text": "blue things"}]},
        "TopicName": "Blue",
        "Target": {"Ref": "DeskFunction"},
        "Other": {"Ref": "Kept"},
    }
    assert resources["Sitebexample"]["Properties"] == {"TopicName": "b.example"}
    assert expanded["Outputs"] == {"LampArn": {"Value": {"Fn::GetAtt": ["LampRed", "TopicArn"]}}}
    assert expanded["Conditions"] == {"IsRed": {"Fn::Equals": ["Red", "Red"]}}
    assert doc["Resources"]["Fn::ForEach::Things"][0] == "Thing"  # the source is left as written


def test_for_each_without_the_transform_or_with_a_duplicate_fails_loudly():
    loop = {"Fn::ForEach::Topics": ["Name", ["A", "B"], {"Topic${Name}": {"Type": "AWS::SNS::Topic"}}]}
    with pytest.raises(ValueError, match="needs Transform AWS::LanguageExtensions"):
        expand_language_extensions({"Transform": "AWS::Serverless-2016-10-31", "Resources": loop})
    assert set(expand_language_extensions({"Transform": "AWS::LanguageExtensions", "Resources": loop})["Resources"]) == {"TopicA", "TopicB"}
    with pytest.raises(ValueError, match="second TopicA"):
        expand_language_extensions({"Transform": ["AWS::LanguageExtensions"], "Resources": {**loop, "TopicA": {"Type": "AWS::SNS::Topic"}}})
    with pytest.raises(ValueError, match="second TopicA"):
        expand_language_extensions({"Transform": ["AWS::LanguageExtensions"], "Resources": {"Fn::ForEach::Topics": ["Name", ["A", "A"], loop["Fn::ForEach::Topics"][2]]}})


def test_the_local_reader_expands_the_template_as_cfn_lint_does(template):
    """What the local stack reads is what the linter (and, it models, CloudFormation) deploys:
    cfn-lint's own AWS::LanguageExtensions transform of template.yaml, from the lint virtualenv."""
    import json

    script = (
        "import json, sys\n"
        "from cfnlint.decode import decode\n"
        "from cfnlint.template import Template\n"
        "from cfnlint.template.transforms.transform import language_extension\n"
        "doc, errors = decode(sys.argv[1])\n"
        "assert not errors, errors\n"
        "errors, expanded = language_extension(Template(sys.argv[1], doc, ['us-east-1']))\n"
        "assert not errors, [str(error) for error in errors]\n"
        "print(json.dumps(expanded))\n"
    )
    result = subprocess.run(
        [ROOT / ".venv-lint" / "bin" / "python", "-c", script, "template.yaml"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    linted = json.loads(result.stdout)
    ours = json.loads(json.dumps(template.doc))
    for section in ("Resources", "Outputs"):
        assert ours.get(section) == linted.get(section), section
