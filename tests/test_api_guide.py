"""docs/API.md against the code it describes: its example manifests pass the real parser, the
numbers it quotes are the code's and the tiers file's, every run.error code the code records
is listed, and the links between the README and the docs resolve. (docs/QUICKSTART.md runs
as written in tests/test_quickstart.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

from conduit.vault import manifests

from conduit.agents import run_steps

from conduit.agents import runs

from conduit.vault import tool_calls
from conduit.net.outbound import GuardedClient
from conduit.platform.tiers import get_tiers

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "API.md").read_text()
FLAT = re.sub(r"\s+", " ", GUIDE)


def json_blocks(text: str) -> list[object]:
    return [json.loads(block) for block in re.findall(r"^\s*```json\n(.*?)^\s*```$", text, flags=re.S | re.M)]


def test_the_example_manifests_are_valid_with_every_tool_kept():
    examples = [block for block in json_blocks(GUIDE) if isinstance(block, dict) and "tools" in block]
    assert len(examples) == 2  # the documented call shape and the plugins' tools_endpoint
    for example in examples:
        parsed = manifests.parse_manifest(example, GuardedClient())
        assert [tool.name for tool in parsed.tools] == [tool["name"] for tool in example["tools"]]
        assert not parsed.warnings


def test_the_numbers_quoted_are_the_codes():
    assert tool_calls.TOOL_TIMEOUT_SECONDS == 30 and "at most **30 seconds**" in FLAT
    tiers = get_tiers()
    assert tiers.tier("free").requests_per_minute == 60 and "**60 requests on free**" in FLAT
    assert f"300 on pro, 600 on harness and team" in FLAT
    assert (tiers.tier("pro").requests_per_minute, tiers.tier("harness").requests_per_minute, tiers.tier("team").requests_per_minute) == (300, 600, 600)
    assert tiers.unauthenticated_requests_per_minute == 30 and "30 a minute on register, login and refresh" in FLAT
    assert tiers.outgoing_calls_per_minute_per_domain == 10 and "at most 10 tool calls a minute" in FLAT
    assert (tiers.costs.model_turn, tiers.costs.tool_call) == (1, 1)
    assert run_steps.STEP_RESULT_CHARS == 4096 and "first 4 KiB" in FLAT
    assert tool_calls.MAX_RESULT_BYTES == 1024 * 1024 and "over 1 MiB" in FLAT


def test_every_run_error_code_is_listed():
    table = GUIDE.split("### `run.error`")[1].split("## Webhooks")[0]
    recorded = {error["code"] for error in runs.ENDING_ERRORS.values()} | {"RUN_NOT_STARTED", "NO_CREDITS", "AGENT_NOT_FOUND"}
    recorded |= run_steps.TRANSIENT_CODES
    for code in recorded:
        assert f"`{code}`" in table, code


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_links_between_the_readme_and_the_docs_resolve():
    readme = (ROOT / "README.md").read_text()
    assert "docs/API.md" in readme and "docs/QUICKSTART.md" in readme
    documents = {"API.md": GUIDE, "QUICKSTART.md": (ROOT / "docs" / "QUICKSTART.md").read_text()}
    for name, text in documents.items():
        for target, anchor in re.findall(r"\]\(((?:API|QUICKSTART)\.md)?#([\w\-]+)\)", text):
            assert anchor in _anchors(documents[target or name]), f"{name}: {target}#{anchor}"
