"""docs/QUICKSTART.md, run as written: every ```sh block of the page, in order, in one bash
process, against the local stack and the demo site (shared/local/demo_site.py). ```console
blocks (starting the servers) are not run. Only what a test must change is changed: the
addresses (`API=`, `DEMO=`), the email (unique per run), the admin step (done with the test
admin's token, since the test stack's ADMIN_EMAILS is fixed) and curl's source address (so per-IP
limits never mix with other tests). Also `make seed` (shared/local/seed.py) against the same stack."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from shared.local.demo_site import DemoSite
from shared.local.seed import SeedError, seed
from tests.helpers import _source_addresses

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "docs" / "QUICKSTART.md"
DOC_EMAIL = "you@example.com"


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


@pytest.fixture
def demo_site():
    site = DemoSite(port=0, quiet=True).serve_in_background()
    yield site
    site.shutdown()
    site.server_close()


def quickstart_script(api: str, demo: str, email: str, admin_token: str, source_address: str) -> str:
    blocks = sh_blocks(QUICKSTART.read_text())
    setup = blocks[0]
    assert "API=http://127.0.0.1:3000" in setup and "DEMO=http://127.0.0.1:8765" in setup
    blocks[0] = setup.replace("API=http://127.0.0.1:3000", f"API={api}").replace("DEMO=http://127.0.0.1:8765", f"DEMO={demo}")
    admin_steps = [index for index, block in enumerate(blocks) if "/admin/accounts/" in block]
    assert len(admin_steps) == 1
    blocks[admin_steps[0]] = f'USER_AUTH="$AUTH"; AUTH="Authorization: Bearer {admin_token}"\n{blocks[admin_steps[0]]}AUTH="$USER_AUTH"\n'
    script = "\n".join(f"echo '=== step {index}'\n{block}" for index, block in enumerate(blocks))
    assert script.count(DOC_EMAIL) == 1
    # A person's shell: -e and -u catch a broken step, no pipefail (`curl | grep -q` may end curl early).
    prelude = f'set -eu\ncurl() {{ command curl --max-time 60 --interface {source_address} "$@"; }}\n'
    return prelude + script.replace(DOC_EMAIL, email)


@pytest.mark.stack
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_quickstart_runs_as_written(local_stack, admin, demo_site):
    number = next(_source_addresses)
    source = f"127.0.{number // 250}.{number % 250 + 2}"
    admin_token = admin["Authorization"].removeprefix("Bearer ")
    email = f"quickstart{time.monotonic_ns()}@example.com"
    script = quickstart_script(local_stack.url, demo_site.origin, email, admin_token, source)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout
    assert done.returncode == 0, f"{output}\n{done.stderr}"
    steps = dict(re.findall(r"^=== step (\d+)\n(.*?)(?=^=== step |\Z)", output, flags=re.S | re.M))
    port = demo_site.server_address[1]
    search, order = f"127_0_0_1_{port}_search_products", f"127_0_0_1_{port}_get_order"
    assert '"accessToken"' in steps["1"]  # register
    assert '"termsAccepted":true' in steps["2"]
    assert f'"prefixedName":"{search}"' in steps["3"] and '"hasToken":true' in steps["3"]
    assert f'"content":"{search} -> {{\\"products\\":[{{\\"sku\\":\\"MUG-1\\"' in steps["4"] and '"status":"ok"' in steps["4"]
    assert steps["5"].index("event: tool_use") < steps["5"].index("event: tool_result") < steps["5"].index("event: done")
    assert '"orderId":2' in steps["5"]
    assert '"tier":"pro"' in steps["6"]
    assert '"status":"succeeded"' in steps["7"] and '"type":"tool"' in steps["7"] and '"result":{"orderId":1,"status":"shipped"' in steps["7"]
    assert '"runId":"run_' in steps["8"]
    assert '"trigger":"scheduled"' in steps["9"] and '"status":"succeeded"' in steps["9"]
    assert f"{order} ->" in steps["7"]


@pytest.mark.stack
def test_seed_puts_a_demo_user_site_and_agent_back_and_is_repeatable(local_stack, demo_site):
    email = f"seed{time.monotonic_ns()}@example.com"
    first = seed(local_stack.url, demo_site.origin, email, "demo password")
    assert first["site"]["url"] == demo_site.origin and first["agent"]["siteIds"] == [first["site"]["id"]]
    again = seed(local_stack.url, demo_site.origin, email, "demo password")
    assert (again["site"]["id"], again["agent"]["id"]) == (first["site"]["id"], first["agent"]["id"])
    assert again["accessToken"] != first["accessToken"]
    # The seeded agent runs: it calls the demo site's get_order with the demo token.
    import httpx

    headers = {"Authorization": f"Bearer {again['accessToken']}"}
    with httpx.Client(base_url=local_stack.url, timeout=60) as client:
        run = client.post(f"/agents/{again['agent']['id']}/runs", json={}, headers=headers).json()
        deadline = time.monotonic() + 120  # a bound, not a timing assertion
        while (run := client.get(f"/runs/{run['id']}", headers=headers).json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(1)
    assert run["status"] == "succeeded", run
    assert [step["result"] for step in run["steps"] if step["type"] == "tool"] == [{"orderId": 1, "status": "shipped", "items": ["MUG-1"]}]


def test_seed_says_what_to_start_when_nothing_answers(demo_site):
    with pytest.raises(SeedError, match="make dev"):
        seed("http://127.0.0.1:9", demo_site.origin, "x@example.com", "demo password")
