"""Credit economics through the local stack (`make dev`): priced `local:echo` turns in parallel on
one account stop exactly where the balance does and leave no hold behind; a priced exchange shows
its actual cost; GET /billing shows the two balances; an admin Idempotency-Key reused for another
body is refused."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shared.local.stack import LocalStack

from .conftest import ROOT
from .helpers import assert_error, bearer, register

pytestmark = pytest.mark.stack

K = 3  # the signup credits of the priced stack: exactly K priced turns
PARALLEL = 10


@pytest.fixture(scope="module")
def priced_stack(tmp_path_factory):
    """A stack whose tiers file prices `local:echo` so low that its hold and its cost are both 1
    credit (the minimum), and gives K signup credits. Unpriced turns cost 5 here."""
    tiers = json.loads((ROOT / "shared" / "tiers.json").read_text())
    tiers["signupCredits"] = K
    tiers["costs"]["modelTurn"] = 5  # what an unpriced turn would cost: a turn costing 1 was priced
    tiers["pricing"] = {
        "creditValueUsd": 0.01,
        "markup": 1.2,
        "models": {"local:echo": {"inputUsdPerMTok": 0.001, "outputUsdPerMTok": 0.001}},
    }
    path = tmp_path_factory.mktemp("priced") / "tiers.json"
    path.write_text(json.dumps(tiers))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIERS_FILE", str(path))  # a knob, reaching the functions as with `make dev`
        stack = LocalStack(port=0, quiet=True).start().serve_in_background()
    yield stack
    stack.stop()


def signed_up(client: httpx.Client, name: str) -> dict:
    session = register(client, email=f"{name}@example.com")
    headers = bearer(session["accessToken"])
    client.post("/auth/accept-terms", json={}, headers=headers)
    return headers


def test_parallel_priced_exchanges_on_one_account_stop_exactly_at_the_balance(priced_stack):
    with httpx.Client(base_url=priced_stack.url, timeout=60) as client:
        headers = signed_up(client, "parallel")
        tokens = [client.post("/sessions", json={"model": "local:echo"}, headers=headers).json()["sessionToken"] for _ in range(PARALLEL)]

        def exchange(token: str) -> httpx.Response:
            return client.post("/chat", json={"sessionToken": token, "message": "hello"}, headers=headers)

        with ThreadPoolExecutor(PARALLEL) as pool:
            responses = list(pool.map(exchange, tokens))
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] * K + [402] * (PARALLEL - K), [r.text for r in responses]
        for response in responses:
            if response.status_code == 200:
                assert response.json()["creditsUsed"] == 1
            else:
                assert_error(response, 402, "NO_CREDITS")
        billing = client.get("/billing", headers=headers).json()
        assert (billing["credits"], billing["monthlyCredits"], billing["purchasedCredits"]) == (0, 0, 0)
        account_id = billing["accountId"]
        ledger = client.get("/billing/ledger?limit=100", headers=headers).json()["items"]
        assert sorted(entry["delta"] for entry in ledger) == [-1] * K + [K]
    table = priced_stack.emulator.client("dynamodb")
    account = table.get_item(TableName="ConduitTable", Key={"PK": {"S": f"ACCOUNT#{account_id}"}, "SK": {"S": "ACCOUNT"}})["Item"]
    assert account["heldCredits"] == {"N": "0"}
    holds = table.query(
        TableName="ConduitTable",
        KeyConditionExpression="PK = :pk AND begins_with(SK, :hold)",
        ExpressionAttributeValues={":pk": {"S": f"ACCOUNT#{account_id}"}, ":hold": {"S": "HOLD#"}},
    )["Items"]
    assert holds == []


def test_a_priced_agent_run_pays_per_turn(priced_stack):
    import time

    with httpx.Client(base_url=priced_stack.url, timeout=60) as client:
        headers = signed_up(client, "agentrun")
        agent = client.post(
            "/agents", json={"name": "a", "systemPrompt": "Be brief.", "model": "local:echo"}, headers=headers
        ).json()
        run = client.post(f"/agents/{agent['id']}/runs", json={"input": {"x": 1}}, headers=headers)
        assert run.status_code == 202, run.text
        for _ in range(120):
            response = client.get(f"/runs/{run.json()['id']}", headers=headers)
            if response.status_code == 200 and (body := response.json())["status"] != "running":
                break
            time.sleep(0.5)
        assert body["status"] == "succeeded", body
        assert body["creditsUsed"] == 1
        assert client.get("/billing", headers=headers).json()["credits"] == K - 1


def test_an_admin_idempotency_key_reused_for_another_body_is_refused(client, admin):
    account_id = register(client)["user"]["id"]
    url = f"/admin/accounts/{account_id}/credits"
    key = {**admin, "Idempotency-Key": "grant-1"}
    first = client.post(url, json={"credits": 50, "reason": "goodwill"}, headers=key)
    assert first.status_code == 200 and first.json() == {"credits": 150}
    assert client.post(url, json={"credits": 50, "reason": "goodwill"}, headers=key).json() == {"credits": 150}
    assert_error(client.post(url, json={"credits": 5000, "reason": "goodwill"}, headers=key), 409, "IDEMPOTENCY_KEY_REUSED")
    balance = client.get("/admin/users", headers=admin)  # nothing changed: the balance is still 150
    assert balance.status_code == 200
    assert client.post(url, json={"credits": 1, "reason": "check"}, headers={**admin, "Idempotency-Key": "grant-2"}).json() == {"credits": 151}
