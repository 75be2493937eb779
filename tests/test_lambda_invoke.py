"""The local stack's Lambda Invoke API: what state machine tasks, EventBridge targets and
boto3 clients reach through the emulator (shared/local/emulator.py, invoke_api.py)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.stack


@pytest.fixture
def lambda_client(local_stack):
    return local_stack.emulator.client("lambda")


def test_an_invoke_runs_the_function_and_returns_its_result(lambda_client):
    event = {"step": "scheduled_start", "agentId": "agt_missing"}
    response = lambda_client.invoke(FunctionName="RunStepsFunction", Payload=json.dumps(event))
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"started": False, "reason": "AGENT_NOT_FOUND"}


def test_an_unhandled_error_is_reported_as_lambda_does(lambda_client):
    response = lambda_client.invoke(FunctionName="RunStepsFunction", Payload=json.dumps({"step": "nonsense", "run": {}}))
    assert response["FunctionError"] == "Unhandled"
    payload = json.loads(response["Payload"].read())
    assert payload["errorType"] == "ValueError" and "nonsense" in payload["errorMessage"]


def test_an_unknown_function_is_not_found(lambda_client):
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName="NoSuchFunction", Payload=b"{}")


def test_an_event_invocation_is_accepted_at_once(lambda_client):
    response = lambda_client.invoke(
        FunctionName="arn:aws:lambda:us-east-1:123456789012:function:RunStepsFunction",
        InvocationType="Event",
        Payload=json.dumps({"step": "scheduled_start", "agentId": "agt_missing"}),
    )
    assert response["StatusCode"] == 202
