"""Agents and runs through the local stack: the deployed state machine executed by moto's
engine, run steps in the stack's worker processes, real sites on loopback (API.md §8)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .helpers import assert_error, signed_up
from .sites import TestSite, rest_manifest, tool

pytestmark = pytest.mark.stack

RUN_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:conduit-local-agent-run"


# --- fixtures and helpers ---------------------------------------------------------------
def new_user(client, admin=None, tier=None):
    account, headers = signed_up(client)
    if tier:
        response = client.patch(f"/admin/accounts/{account}", json={"tier": tier}, headers=admin)
        assert response.status_code == 200, response.text
    return {"headers": headers, "account": account}


@pytest.fixture
def user(client):
    return new_user(client)


@pytest.fixture
def pro_user(client, admin):
    return new_user(client, admin, "pro")


class Gate:
    """A tool that blocks until the test opens the gate; `entered` is set once a call arrives."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.calls: list[dict] = []

    def handler(self, site, path, headers, body):
        self.calls.append({"arguments": json.loads(body), "authorization": headers.get("authorization"), "at": time.time()})
        self.entered.set()
        self.opened.wait(60)
        return 200, {"found": json.loads(body)}


@pytest.fixture
def gate():
    gate = Gate()
    yield gate
    gate.opened.set()


@pytest.fixture
def site(gate):
    tools = [tool("search", q={"type": "string", "minLength": 1}), tool("slow")]
    routes = {
        ("POST", "/tools/search"): lambda s, p, h, b: (200, {"hits": [json.loads(b)["q"]]}),
        ("POST", "/tools/slow"): gate.handler,
    }
    test_site = TestSite(manifest=lambda s: rest_manifest(s, tools=tools), routes=routes)
    yield test_site
    test_site.close()


def connect(client, user, test_site, token="site-token"):
    response = client.post("/vault/sites", json={"url": test_site.origin, "token": token}, headers=user["headers"])
    assert response.status_code == 201, response.text
    return {tool["name"]: tool["prefixedName"] for tool in response.json()["tools"]}


def create_agent(client, user, **fields):
    body = {"name": "Agent", "systemPrompt": "Say hello", **fields}
    response = client.post("/agents", json=body, headers=user["headers"])
    assert response.status_code == 201, response.text
    return response.json()


def start(client, user, agent_id, **body):
    while True:  # waiting out the per-minute limit, as `get` does
        response = client.post(f"/agents/{agent_id}/runs", json=body, headers=user["headers"])
        if response.status_code != 429:
            return response
        time.sleep(int(response.headers["Retry-After"]))


def get(client, user, path, params=None):
    """A GET that waits out the account's per-minute limit: polling runs counts against it."""
    while True:
        response = client.get(path, params=params, headers=user["headers"])
        if response.status_code != 429:
            assert response.status_code == 200, response.text
            return response.json()
        time.sleep(int(response.headers["Retry-After"]))


def wait_for_run(client, user, run_id, until=lambda run: run["status"] != "running", seconds=90, params=None):
    deadline = time.monotonic() + seconds
    while True:
        run = get(client, user, f"/runs/{run_id}", params)
        if until(run):
            return run
        assert time.monotonic() < deadline, f"run never reached the expected state: {run}"
        time.sleep(0.5)


def ledger(client, user):
    return get(client, user, "/billing/ledger", {"limit": 100})["items"]


# --- agents -------------------------------------------------------------------------------
def test_agent_lifecycle(client, user):
    agent = create_agent(client, user, description="Greets", maxRounds=3)
    assert agent["id"].startswith("agt_")
    assert (agent["model"], agent["triggerType"], agent["isActive"], agent["maxRounds"]) == ("local:echo", "manual", True, 3)
    assert "webhook" not in agent
    assert get(client, user, f"/agents/{agent['id']}") == agent
    listed = get(client, user, "/agents")
    assert [item["id"] for item in listed["items"]] == [agent["id"]] and listed["nextCursor"] is None
    changed = client.patch(f"/agents/{agent['id']}", json={"name": "Renamed", "description": None}, headers=user["headers"])
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["description"], changed.json()["systemPrompt"]) == ("Renamed", None, "Say hello")
    assert client.delete(f"/agents/{agent['id']}", headers=user["headers"]).status_code == 204
    assert_error(client.get(f"/agents/{agent['id']}", headers=user["headers"]), 404, "AGENT_NOT_FOUND")
    assert_error(client.delete(f"/agents/{agent['id']}", headers=user["headers"]), 404, "AGENT_NOT_FOUND")


def test_another_accounts_agent_and_run_are_not_found(client, user, site):
    agent = create_agent(client, user)
    run = start(client, user, agent["id"]).json()
    stranger = new_user(client)
    assert_error(client.get(f"/agents/{agent['id']}", headers=stranger["headers"]), 404, "AGENT_NOT_FOUND")
    assert_error(client.patch(f"/agents/{agent['id']}", json={"name": "x"}, headers=stranger["headers"]), 404, "AGENT_NOT_FOUND")
    assert_error(start(client, stranger, agent["id"]), 404, "AGENT_NOT_FOUND")
    assert_error(client.get(f"/runs/{run['id']}", headers=stranger["headers"]), 404, "RUN_NOT_FOUND")
    assert_error(client.post(f"/runs/{run['id']}/cancel", headers=stranger["headers"]), 404, "RUN_NOT_FOUND")
    assert_error(client.get("/runs/run_missing", headers=user["headers"]), 404, "RUN_NOT_FOUND")
    assert get(client, stranger, "/agents")["items"] == []
    wait_for_run(client, user, run["id"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"maxRounds": 0}, "maxRounds"),
        ({"maxRounds": 21}, "maxRounds"),
        ({"model": "nowhere:model"}, "model"),
        ({"triggerType": "sometimes"}, "triggerType"),
        ({"unknownField": 1}, "unknownField"),
        ({"siteIds": ["site_missing"]}, "siteIds.0"),
        ({"schedule": "rate(5 minutes)"}, "schedule"),
        ({"webhookSchema": {"type": "object"}}, "webhookSchema"),
    ],
)
def test_bad_agent_fields_are_refused_and_nothing_is_stored(client, user, body, field):
    response = client.post("/agents", json={"name": "A", "systemPrompt": "p", **body}, headers=user["headers"])
    assert_error(response, 400, "VALIDATION_ERROR")
    assert any(detail["field"].startswith(field) for detail in response.json()["details"]), response.json()
    assert get(client, user, "/agents")["items"] == []


def test_agent_limit_holds_under_parallel_creates(client, user):
    """free: maxAgents 2."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda i: client.post("/agents", json={"name": f"A{i}", "systemPrompt": "p"}, headers=user["headers"]), range(6)))
    assert sorted(response.status_code for response in responses) == [201, 201, 403, 403, 403, 403]
    for response in responses:
        if response.status_code == 403:
            assert_error(response, 403, "AGENT_LIMIT_REACHED")
    assert len(get(client, user, "/agents")["items"]) == 2


def test_webhook_and_scheduled_triggers_need_a_tier_with_them(client, user):
    assert_error(client.post("/agents", json={"name": "A", "systemPrompt": "p", "triggerType": "webhook"}, headers=user["headers"]), 403, "TIER_REQUIRED")
    scheduled = {"name": "A", "systemPrompt": "p", "triggerType": "scheduled", "schedule": "rate(1 hour)"}
    assert_error(client.post("/agents", json=scheduled, headers=user["headers"]), 403, "TIER_REQUIRED")
    agent = create_agent(client, user)
    assert_error(client.patch(f"/agents/{agent['id']}", json={"triggerType": "webhook"}, headers=user["headers"]), 403, "TIER_REQUIRED")
    assert get(client, user, f"/agents/{agent['id']}")["triggerType"] == "manual"


# --- runs -----------------------------------------------------------------------------------
def test_a_run_calls_a_tool_and_succeeds(client, user, site):
    names = connect(client, user, site)
    search = names["search"]
    agent = create_agent(client, user, systemPrompt=f'call {search} {{"q": "cats"}}')
    started = start(client, user, agent["id"], input={"topic": "pets"})
    assert started.status_code == 202, started.text
    assert (started.json()["status"], started.json()["trigger"], started.json()["input"]) == ("running", "manual", {"topic": "pets"})
    run = wait_for_run(client, user, started.json()["id"])
    assert run["status"] == "succeeded", run
    assert run["output"] == f'{search} -> {{"hits":["cats"]}}'
    assert [step["type"] for step in run["steps"]] == ["model", "tool", "model"]
    tool_step = run["steps"][1]
    assert (tool_step["tool"], tool_step["arguments"], tool_step["status"]) == (search, {"q": "cats"}, "ok")
    assert tool_step["result"] == {"hits": ["cats"]}  # as chat's tool_result shows it
    assert run["creditsUsed"] == 3 and run["endedAt"] and run["error"] is None
    # The site received the original tool name, the arguments and the vault's token.
    (call,) = [r for r in site.requests if r.path == "/tools/search"]
    assert json.loads(call.body) == {"q": "cats"} and call.headers["authorization"] == "Bearer site-token"
    assert [entry["delta"] for entry in ledger(client, user)][:3] == [-1, -1, -1]
    listed = get(client, user, f"/agents/{agent['id']}/runs")
    assert [item["id"] for item in listed["items"]] == [run["id"]]
    assert get(client, user, f"/agents/{agent['id']}")["activeRunId"] is None


def test_bad_arguments_are_not_charged_and_a_large_result_is_bounded_in_its_step(client, user):
    tools = [tool("search", q={"type": "string", "minLength": 1}), tool("big")]
    routes = {("POST", "/tools/big"): lambda s, p, h, b: (200, {"text": "x" * 10_000})}
    test_site = TestSite(manifest=lambda s: rest_manifest(s, tools=tools), routes=routes)
    try:
        names = connect(client, user, test_site)
        agent = create_agent(client, user, systemPrompt=f'call {names["search"]} {{"q": ""}}\ncall {names["big"]} {{}}')
        run = wait_for_run(client, user, start(client, user, agent["id"]).json()["id"])
    finally:
        test_site.close()
    assert run["status"] == "succeeded", run
    assert [step["type"] for step in run["steps"]] == ["model", "tool", "model", "tool", "model"]
    refused, big = run["steps"][1], run["steps"][3]
    assert (refused["status"], refused["credits"], refused["result"]["code"]) == ("error", 0, "VALIDATION_ERROR")
    assert not [r for r in test_site.requests if r.path == "/tools/search"]
    assert (big["status"], big["credits"]) == ("ok", 1)
    assert set(big["result"]) == {"truncated"} and len(big["result"]["truncated"]) == 4096
    assert big["result"]["truncated"].startswith('{"text":"xxx')
    assert run["creditsUsed"] == 4  # three model turns (local:echo: one call each) and the one call that reached the site


def test_the_model_sees_the_input_as_the_message_and_the_prompt_as_the_system_prompt(client, user):
    # API.md §8 (v2): the user message is the run input as compact JSON, `null` when none; the prompt
    # goes as the system prompt (echo answers the message; tests/test_chat.py shows the system channel).
    agent = create_agent(client, user, systemPrompt="Summarise")
    run = wait_for_run(client, user, start(client, user, agent["id"], input={"b": [1, 2]}).json()["id"])
    assert run["output"] == 'echo: {"b":[1,2]}'
    # local:echo's usage: a token is 4 characters of what it read ("Summarise" and the input) and wrote.
    assert run["steps"][0]["finishReason"] == "stop" and run["steps"][0]["usage"] == {"inputTokens": 5, "outputTokens": 5}
    no_input = wait_for_run(client, user, start(client, user, agent["id"]).json()["id"])
    assert no_input["output"] == "echo: null"


def test_an_invented_tool_goes_back_to_the_model_and_the_run_goes_on(client, user):
    agent = create_agent(client, user, systemPrompt='call nowhere_tool {"a": 1}')
    run = wait_for_run(client, user, start(client, user, agent["id"]).json()["id"])
    assert run["status"] == "succeeded"
    assert run["steps"][1]["status"] == "error" and run["output"].startswith("nowhere_tool -> ")


def test_six_parallel_starts_admit_exactly_one(client, user, site, gate):
    names = connect(client, user, site)
    agent = create_agent(client, user, systemPrompt=f"call {names['slow']} {{}}")
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: start(client, user, agent["id"]), range(6)))
    assert sorted(response.status_code for response in responses) == [202, 409, 409, 409, 409, 409]
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "AGENT_ALREADY_RUNNING")
    (winner,) = [response.json() for response in responses if response.status_code == 202]
    assert len(get(client, user, f"/agents/{agent['id']}/runs")["items"]) == 1
    gate.opened.set()
    assert wait_for_run(client, user, winner["id"])["status"] == "succeeded"
    assert start(client, user, agent["id"]).status_code == 202  # free again


def test_cancel_during_a_slow_tool_frees_the_agent_at_once(client, user, site, gate, local_stack):
    names = connect(client, user, site)
    agent = create_agent(client, user, systemPrompt=f"call {names['slow']} {{}}")
    run = start(client, user, agent["id"]).json()
    assert gate.entered.wait(30), "the tool was never called"
    cancelled = client.post(f"/runs/{run['id']}/cancel", headers=user["headers"])
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["endedAt"]
    assert cancelled.json()["error"]["code"] == "RUN_CANCELLED"
    # The agent is free as soon as cancel answers.
    second = start(client, user, agent["id"])
    assert second.status_code == 202, second.text
    assert_error(client.post(f"/runs/{run['id']}/cancel", headers=user["headers"]), 400, "RUN_NOT_CANCELLABLE")
    execution = f"{RUN_MACHINE.replace(':stateMachine:', ':execution:')}:{run['id']}"
    # The first run's late tool step finishes without touching the second run's hold on the agent.
    gate.opened.set()
    assert wait_for_run(client, user, second.json()["id"])["status"] == "succeeded"
    first = get(client, user, f"/runs/{run['id']}")
    assert first["status"] == "cancelled"
    assert local_stack.emulator.client("stepfunctions").describe_execution(executionArn=execution)["status"] == "ABORTED"
    # Credits for the completed model turn stay spent.
    assert first["creditsUsed"] >= 1


def test_a_run_stopped_outside_the_api_still_frees_the_agent(client, user, site, gate, local_stack):
    names = connect(client, user, site)
    agent = create_agent(client, user, systemPrompt=f"call {names['slow']} {{}}")
    run = start(client, user, agent["id"]).json()
    assert gate.entered.wait(30)
    sfn = local_stack.emulator.client("stepfunctions")
    sfn.stop_execution(executionArn=f"{RUN_MACHINE.replace(':stateMachine:', ':execution:')}:{run['id']}")
    # The execution status change (EventBridge rule) ends the run as cancelled and frees the agent.
    ended = wait_for_run(client, user, run["id"])
    assert ended["status"] == "cancelled"
    assert get(client, user, f"/agents/{agent['id']}")["activeRunId"] is None
    gate.opened.set()
    assert start(client, user, agent["id"]).status_code == 202


def test_a_lock_whose_execution_ended_unnoticed_is_reclaimed(client, user, local_stack):
    """The status-change event is best effort: a start that finds the lock held checks the holder's execution."""
    agent = create_agent(client, user)
    run = wait_for_run(client, user, start(client, user, agent["id"]).json()["id"])
    table = local_stack.emulator.client("dynamodb")
    # As if the ending had never been recorded: the finished run still holds the agent and reads as running.
    table.update_item(
        TableName="ConduitTable",
        Key={"PK": {"S": f"AGENT#{agent['id']}"}, "SK": {"S": "AGENT"}},
        UpdateExpression="SET activeRunId = :run, activeRunLeaseUntil = :lease",
        ExpressionAttributeValues={":run": {"S": run["id"]}, ":lease": {"N": str(int(time.time()) + 3600)}},
    )
    table.update_item(
        TableName="ConduitTable",
        Key={"PK": {"S": f"RUN#{run['id']}"}, "SK": {"S": "RUN"}},
        UpdateExpression="SET #s = :running",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":running": {"S": "running"}},
    )
    assert start(client, user, agent["id"]).status_code == 202
    assert get(client, user, f"/runs/{run['id']}")["status"] == "succeeded"


def test_an_expired_lease_frees_the_agent_and_an_unexpired_one_does_not(client, user, local_stack):
    agent = create_agent(client, user)
    table = local_stack.emulator.client("dynamodb")

    def hold(lease_until):
        table.update_item(
            TableName="ConduitTable",
            Key={"PK": {"S": f"AGENT#{agent['id']}"}, "SK": {"S": "AGENT"}},
            UpdateExpression="SET activeRunId = :run, activeRunLeaseUntil = :lease",
            ExpressionAttributeValues={":run": {"S": "run_lost"}, ":lease": {"N": str(lease_until)}},
        )

    hold(int(time.time()) + 3600)
    assert_error(start(client, user, agent["id"]), 409, "AGENT_ALREADY_RUNNING")
    hold(int(time.time()) - 1)
    started = start(client, user, agent["id"])
    assert started.status_code == 202
    wait_for_run(client, user, started.json()["id"])


def test_a_run_past_run_timeout_seconds_times_out_and_frees_the_agent(client, user, site, gate):
    """RUN_TIMEOUT_SECONDS is 20 in the test stack (conftest); the tool blocks longer."""
    names = connect(client, user, site)
    agent = create_agent(client, user, systemPrompt=f"call {names['slow']} {{}}")
    run = start(client, user, agent["id"]).json()
    ended = wait_for_run(client, user, run["id"], seconds=120)
    assert ended["status"] == "timed_out", ended
    assert ended["error"]["code"] == "RUN_TIMED_OUT"
    gate.opened.set()
    assert get(client, user, f"/agents/{agent['id']}")["activeRunId"] is None


def test_credits_running_out_mid_run_fail_it_with_no_credits(client, user, site, admin):
    names = connect(client, user, site)
    agent = create_agent(client, user, systemPrompt=f'call {names["search"]} {{"q": "x"}}')
    balance = get(client, user, "/billing")["credits"]
    client.post(f"/admin/accounts/{user['account']}/credits", json={"credits": 1 - balance, "reason": "test"}, headers=admin)
    run = wait_for_run(client, user, start(client, user, agent["id"]).json()["id"])
    assert run["status"] == "failed" and run["error"]["code"] == "NO_CREDITS", run
    assert run["creditsUsed"] == 1  # the model turn it completed stays paid
    assert get(client, user, "/billing")["credits"] == 0
    assert not [r for r in site.requests if r.path == "/tools/search"]  # no call it could not pay for
    assert_error(start(client, user, agent["id"]), 402, "NO_CREDITS")


def test_the_outgoing_limit_pauses_a_run_until_the_window_allows(client, user, site, local_stack):
    """The domain's window for this account is already full: the run waits for the next minute.
    It starts late in a minute, so the wait fits in the test stack's RUN_TIMEOUT_SECONDS (20)."""
    names = connect(client, user, site)
    called_at = []
    site.routes[("POST", "/tools/search")] = lambda s, p, h, b: (called_at.append(time.time()), (200, {"hits": ["later"]}))[1]
    agent = create_agent(client, user, systemPrompt=f'call {names["search"]} {{"q": "later"}}')
    remaining = 60 - time.time() % 60
    if remaining > 8:
        time.sleep(remaining - 8)
    window_start = int(time.time()) // 60 * 60
    local_stack.emulator.client("dynamodb").put_item(
        TableName="ConduitTable",
        Item={
            "PK": {"S": f"RATE#outgoing#{user['account']}#{site.domain}#{window_start}"},
            "SK": {"S": "RATE"},
            "count": {"N": "10"},
            "expiresAt": {"N": str(window_start + 120)},
        },
    )
    run = start(client, user, agent["id"]).json()
    ended = wait_for_run(client, user, run["id"], seconds=120)
    assert ended["status"] == "succeeded", ended
    assert ended["output"].endswith('{"hits":["later"]}')
    (call_time,) = called_at
    assert call_time >= window_start + 60  # called once, and only in the next window


def test_runs_are_listed_newest_first_with_pages(client, user):
    agent = create_agent(client, user)
    ids = [wait_for_run(client, user, start(client, user, agent["id"]).json()["id"])["id"] for _ in range(3)]
    first = get(client, user, f"/agents/{agent['id']}/runs", {"limit": 2})
    assert [item["id"] for item in first["items"]] == ids[::-1][:2] and first["nextCursor"]
    second = get(client, user, f"/agents/{agent['id']}/runs", {"limit": 2, "cursor": first["nextCursor"]})
    assert [item["id"] for item in second["items"]] == [ids[0]] and second["nextCursor"] is None


def test_an_inactive_agent_does_not_run(client, user):
    agent = create_agent(client, user, isActive=False)
    assert_error(start(client, user, agent["id"]), 409, "AGENT_INACTIVE")


# --- webhooks -------------------------------------------------------------------------------
def test_webhook_secret_schema_and_rotation(client, pro_user, local_stack):
    schema = {"type": "object", "required": ["order"], "properties": {"order": {"type": "integer"}}}
    agent = create_agent(client, pro_user, triggerType="webhook", webhookSchema=schema)
    url, secret = agent["webhook"]["url"], agent["webhook"]["secret"]
    assert url.startswith(f"{local_stack.url}/webhooks/") and url.endswith(agent["id"]) and secret
    assert secret.startswith("cwh_") and len(secret) == 4 + 43  # our own prefix, not Stripe's whsec_
    assert "secret" not in get(client, pro_user, f"/agents/{agent['id']}")["webhook"]
    assert_error(client.post(url, json={"order": 1}), 401, "WEBHOOK_SECRET_INVALID")
    assert_error(client.post(url, json={"order": 1}, headers={"X-Webhook-Secret": secret + "x"}), 401, "WEBHOOK_SECRET_INVALID")
    assert_error(client.post(f"{local_stack.url}/webhooks/agt_unknown", json={}, headers={"X-Webhook-Secret": secret}), 401, "WEBHOOK_SECRET_INVALID")
    invalid = client.post(url, json={"order": "one"}, headers={"X-Webhook-Secret": secret})
    assert_error(invalid, 422, "WEBHOOK_PAYLOAD_INVALID")
    assert invalid.json()["details"][0]["field"] == "body.order"
    assert_error(client.post(url, content=b"{not json", headers={"X-Webhook-Secret": secret, "Content-Type": "application/json"}), 422, "WEBHOOK_PAYLOAD_INVALID")
    assert get(client, pro_user, f"/agents/{agent['id']}/runs")["items"] == []
    accepted = client.post(url, json={"order": 7}, headers={"X-Webhook-Secret": secret})
    assert accepted.status_code == 202, accepted.text
    run = wait_for_run(client, pro_user, accepted.json()["runId"])
    assert (run["trigger"], run["input"], run["status"]) == ("webhook", {"order": 7}, "succeeded")
    rotated = client.post(f"/agents/{agent['id']}/webhook-secret", headers=pro_user["headers"]).json()
    assert rotated["url"] == url and rotated["secret"] != secret
    assert_error(client.post(url, json={"order": 8}, headers={"X-Webhook-Secret": secret}), 401, "WEBHOOK_SECRET_INVALID")
    assert client.post(url, json={"order": 8}, headers={"X-Webhook-Secret": rotated["secret"]}).status_code == 202


def test_an_older_whsec_secret_still_verifies(client, pro_user, local_stack):
    """Secrets made before the cwh_ prefix are stored as their hash like any other: they keep working."""
    from conduit.agents.definitions import hash_secret

    agent = create_agent(client, pro_user, triggerType="webhook")
    old = "whsec_" + "a" * 43
    local_stack.emulator.client("dynamodb").update_item(
        TableName="ConduitTable",
        Key={"PK": {"S": f"AGENT#{agent['id']}"}, "SK": {"S": "AGENT"}},
        UpdateExpression="SET webhookSecretHash = :h",
        ExpressionAttributeValues={":h": {"S": hash_secret(old)}},
    )
    assert client.post(agent["webhook"]["url"], json={}, headers={"X-Webhook-Secret": old}).status_code == 202


def test_an_invalid_webhook_schema_is_refused_at_create(client, pro_user):
    response = client.post(
        "/agents",
        json={"name": "A", "systemPrompt": "p", "triggerType": "webhook", "webhookSchema": {"type": "nonsense"}},
        headers=pro_user["headers"],
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    assert response.json()["details"][0]["field"].startswith("webhookSchema")


def test_rotating_a_manual_agents_secret_is_refused(client, user):
    agent = create_agent(client, user)
    assert_error(client.post(f"/agents/{agent['id']}/webhook-secret", headers=user["headers"]), 400, "VALIDATION_ERROR")


# --- schedules ------------------------------------------------------------------------------
def test_a_scheduled_agents_schedule_follows_the_agent(client, pro_user, local_stack):
    scheduler = local_stack.emulator.client("scheduler")
    agent = create_agent(client, pro_user, triggerType="scheduled", schedule="cron(0 9 * * ? *)", timezone="Europe/Paris")
    schedule = scheduler.get_schedule(Name=agent["id"], GroupName="conduit-local-agents")
    assert schedule["ScheduleExpression"] == "cron(0 9 * * ? *)"
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Paris" and schedule["State"] == "ENABLED"
    assert schedule["Target"]["Arn"].endswith(":function:RunStepsFunction")
    assert json.loads(schedule["Target"]["Input"]) == {"step": "scheduled_start", "agentId": agent["id"]}

    # Firing: the schedule's target and input start a run, as EventBridge Scheduler would.
    fired = local_stack.emulator.client("lambda").invoke(FunctionName=schedule["Target"]["Arn"], Payload=schedule["Target"]["Input"])
    result = json.loads(fired["Payload"].read())
    assert result["started"] is True, result
    run = wait_for_run(client, pro_user, result["runId"])
    assert (run["trigger"], run["status"]) == ("scheduled", "succeeded")

    client.patch(f"/agents/{agent['id']}", json={"schedule": "rate(5 minutes)", "isActive": False}, headers=pro_user["headers"])
    schedule = scheduler.get_schedule(Name=agent["id"], GroupName="conduit-local-agents")
    assert (schedule["ScheduleExpression"], schedule["State"]) == ("rate(5 minutes)", "DISABLED")
    client.patch(f"/agents/{agent['id']}", json={"triggerType": "manual"}, headers=pro_user["headers"])
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=agent["id"], GroupName="conduit-local-agents")
    assert get(client, pro_user, f"/agents/{agent['id']}")["schedule"] is None


def test_deleting_a_scheduled_agent_deletes_its_schedule(client, pro_user, local_stack):
    scheduler = local_stack.emulator.client("scheduler")
    agent = create_agent(client, pro_user, triggerType="scheduled", schedule="rate(1 hour)")
    assert client.delete(f"/agents/{agent['id']}", headers=pro_user["headers"]).status_code == 204
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=agent["id"], GroupName="conduit-local-agents")


@pytest.mark.parametrize(
    ("schedule", "timezone"),
    [("every day", None), ("rate(0 minutes)", None), ("rate(1 minutes)", None), ("cron(0 9 * *)", None), ("rate(1 hour)", "Mars/Olympus")],
)
def test_bad_schedules_are_refused(client, pro_user, schedule, timezone):
    body = {"name": "A", "systemPrompt": "p", "triggerType": "scheduled", "schedule": schedule}
    if timezone:
        body["timezone"] = timezone
    assert_error(client.post("/agents", json=body, headers=pro_user["headers"]), 400, "VALIDATION_ERROR")
    assert get(client, pro_user, "/agents")["items"] == []


# --- workspaces -----------------------------------------------------------------------------
def test_workspace_agents_follow_roles(client, admin):
    owner = new_user(client, admin, "team")
    viewer = new_user(client)
    outsider = new_user(client)
    workspace = client.post("/workspaces", json={"name": "Team"}, headers=owner["headers"]).json()
    viewer_email = get(client, viewer, "/auth/me")["email"]
    client.post(f"/workspaces/{workspace['id']}/members", json={"email": viewer_email, "role": "viewer"}, headers=owner["headers"])
    client.post(f"/admin/accounts/{workspace['id']}/credits", json={"credits": 10, "reason": "test"}, headers=admin)
    agent = create_agent(client, owner, workspaceId=workspace["id"])
    params = {"workspaceId": workspace["id"]}
    assert client.get(f"/agents/{agent['id']}", params=params, headers=viewer["headers"]).status_code == 200
    assert_error(client.post("/agents", json={"name": "A", "systemPrompt": "p", "workspaceId": workspace["id"]}, headers=viewer["headers"]), 403, "PERMISSION_DENIED")
    assert_error(client.post(f"/agents/{agent['id']}/runs", params=params, json={}, headers=viewer["headers"]), 403, "PERMISSION_DENIED")
    assert_error(client.get(f"/agents/{agent['id']}", params=params, headers=outsider["headers"]), 404, "WORKSPACE_NOT_FOUND")
    assert get(client, owner, "/agents")["items"] == []  # personal list
    started = client.post(f"/agents/{agent['id']}/runs", params=params, json={}, headers=owner["headers"])
    assert started.status_code == 202
    assert client.get(f"/runs/{started.json()['id']}", params=params, headers=viewer["headers"]).status_code == 200
    assert_error(client.get(f"/runs/{started.json()['id']}", headers=owner["headers"]), 404, "RUN_NOT_FOUND")
    assert wait_for_run(client, owner, started.json()["id"], params=params)["status"] == "succeeded"
