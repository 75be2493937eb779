"""Priced model turns (API.md §15): what the credits path costs in DynamoDB requests, and how
parallel exchanges on ONE account (a Team workspace is one hot account: every change of its
balance is a compare-and-set on the same item) compare with the same load spread over accounts.

- `requests()`: in-process against moto, the DynamoDB requests of one priced turn's hold and
  settlement (and of one unpriced turn), counted with botocore's before-call event.
- `throughput()`: through the local stack, `POST /chat` on a priced `local:echo` (no tool) from
  1, 4, 8 and 16 concurrent clients, all on one account vs each on its own account.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.platform import bench_platform

PRICING = {  # local:echo priced like a small hosted model
    "creditValueUsd": 0.001,
    "markup": 1.2,
    "models": {"local:echo": {"inputUsdPerMTok": 0.15, "outputUsdPerMTok": 0.6}},
}
CONCURRENCY = (1, 4, 8, 16)
EXCHANGES_PER_CLIENT = 4


def requests() -> list[dict[str, Any]]:
    import boto3
    from moto import mock_aws

    from bench import dynamodb_requests  # noqa: F401 - its environment (fake credentials, table name)
    from shared.local.emulator import create_resources
    from shared.local.template import Template

    root = Path(__file__).resolve().parents[1]
    if str(root / "layers" / "conduit") not in sys.path:  # the layer, as Lambda mounts it
        sys.path.insert(0, str(root / "layers" / "conduit"))
    tiers = json.loads((root / "shared" / "tiers.json").read_text())
    tiers["pricing"] = PRICING
    rows = []
    with tempfile.TemporaryDirectory() as scratch, mock_aws():
        tiers_file = Path(scratch) / "tiers.json"
        tiers_file.write_text(json.dumps(tiers))
        os.environ["TIERS_FILE"] = str(tiers_file)
        from datetime import UTC, datetime

        from conduit.billing import credits
        from conduit.models import Message
        from conduit.models.echo import EchoModel
        from conduit.repositories.accounts import AccountsRepository
        from conduit.platform.aws import dynamodb_client
        from conduit.repositories.base import write_transaction
        from conduit.platform.settings import get_settings
        from conduit.platform.tiers import get_tiers

        get_settings.cache_clear()
        get_tiers.cache_clear()
        dynamodb_client.cache_clear()
        create_resources(boto3.client, Template())
        accounts = AccountsRepository()
        account_id = f"usr_{uuid.uuid4().hex[:12]}"
        write_transaction(
            accounts.client,
            accounts.new_account_items(account_id, kind="personal", owner_id=account_id, signup_credits=10_000, now=datetime.now(UTC)),
        )
        calls: list[str] = []
        dynamodb_client().meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
        messages = [Message(role="user", content="What is on my calendar today?")]
        for label, model in (("priced turn (hold + settle)", "local:echo"), ("unpriced turn (spend)", "openai:unlisted")):
            calls.clear()
            with credits.hold_model_turn(account_id, model, messages, [], "bench", f"bench:{label}", time.time() + 60) as hold:
                held = list(calls)
                hold.settle(EchoModel().complete("echo", messages, [], deadline=time.monotonic() + 5).usage)
            rows.append({"turn": label, "requests": len(calls), "hold": held, "operations": list(calls)})
        get_tiers.cache_clear()
        os.environ.pop("TIERS_FILE", None)
    return rows


def throughput() -> list[dict[str, Any]]:
    rows = []
    with bench_platform(pricing=PRICING) as platform, httpx.Client(base_url=platform.url, timeout=300) as client:

        def user(number: int) -> dict[str, str]:
            email = f"hold{number}-{uuid.uuid4().hex[:6]}@example.com"
            session = client.post("/auth/register", json={"email": email, "password": "bench password"}).json()
            headers = {"Authorization": f"Bearer {session['accessToken']}"}
            client.post("/auth/accept-terms", json={}, headers=headers)
            return headers

        hot = user(0)
        spread = [user(n) for n in range(1, max(CONCURRENCY) + 1)]

        def session(headers: dict[str, str]) -> str:
            return client.post("/sessions", json={"model": "local:echo"}, headers=headers).json()["sessionToken"]

        with ThreadPoolExecutor(max(CONCURRENCY)) as pool:
            for layout in ("one account", "16 accounts"):
                for concurrency in CONCURRENCY:
                    owners = [hot] * concurrency if layout == "one account" else spread[:concurrency]
                    tokens = [session(headers) for headers in owners]

                    def exchanges(index: int) -> list[int]:
                        body = {"sessionToken": tokens[index], "message": "What is on my calendar today?"}
                        statuses = []
                        for _ in range(EXCHANGES_PER_CLIENT):
                            try:
                                statuses.append(client.post("/chat", json=body, headers=owners[index]).status_code)
                            except httpx.TimeoutException:
                                statuses.append(0)  # counted as not ok
                        return statuses

                    list(pool.map(lambda index: client.post("/chat", json={"sessionToken": tokens[index], "message": "warm"}, headers=owners[index]), range(concurrency)))
                    started = time.perf_counter()
                    statuses = [status for batch in pool.map(exchanges, range(concurrency)) for status in batch]
                    wall = time.perf_counter() - started
                    print(f"{layout}, {concurrency} clients: {statuses.count(200)}/{len(statuses)} ok in {wall:.1f} s", file=sys.stderr)
                    rows.append(
                        {
                            "layout": layout,
                            "clients": concurrency,
                            "exchanges": len(statuses),
                            "ok": statuses.count(200),
                            "exchanges_per_second": round(len(statuses) / wall, 1),
                        }
                    )
    return rows


def measure() -> dict[str, Any]:
    return {"requests": requests(), "throughput": throughput()}


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
