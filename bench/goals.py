"""The performance issue's table (issue 22): each figure next to its goal, from one run.

    make bench-goals      # only what this table needs (a few minutes)
    make bench            # every benchmark, this table last

`table(results)` builds the rows from what the other benchmarks measured; `measure()` runs
only those (cold import, DynamoDB requests, `GET /agents` under 8 clients, the chat tool call).
"""

from __future__ import annotations

import os
from typing import Any


def measure() -> dict[str, Any]:
    from bench import chat_overhead, cold_import, dynamodb_requests, latency

    return {
        "cold_import": cold_import.measure(runs=7),
        "dynamodb_requests": dynamodb_requests.measure(),
        "latency": latency.measure(operations=("GET /agents",), concurrency_levels=(8,)),
        "chat_overhead": chat_overhead.measure(runs=15),
    }


def table(results: dict[str, Any]) -> list[list[str]]:
    """Rows of (figure, measured, goal, met?)."""
    rows: list[list[str]] = []
    functions = [row for row in results["cold_import"] if not row["function"].startswith("baseline")]
    worst = max(functions, key=lambda row: row["ratio_to_baseline"])
    rows.append(
        [
            "cold import vs bare Powertools + boto3 (worst function)",
            f"{worst['ratio_to_baseline']}x ({worst['function']})",
            "<= 1.2x",
            _met(worst["ratio_to_baseline"] <= 1.2),
        ]
    )
    requests = {row["route"]: row["requests"] for row in results["dynamodb_requests"]}
    chat = requests["POST /chat (no tool)"]
    rows.append(["DynamoDB requests, one chat exchange without tools", str(chat), "<= 5", _met(chat <= 5)])
    # The reads: every GET route of the OpenAPI document but /health, as dynamodb_requests generated them.
    reads = [row for row in results["dynamodb_requests"] if row["route"].startswith("GET /") and row.get("status") == 200]
    reads = [row for row in reads if row["route"] != "GET /health"]
    items = [row for row in reads if "Query" not in row["operations"]]
    lists = [row for row in reads if "Query" in row["operations"]]
    for label, group in (("authenticated read of an item (max)", items), ("  list routes (max; gate + the page's Query)", lists)):
        most = max(row["requests"] for row in group)
        worst = ", ".join(row["route"].removeprefix("GET ") for row in group if row["requests"] == most)
        goal = "<= 2" if group is items else "-"
        rows.append([f"DynamoDB requests, {label}", f"{most} ({worst})"[:60], goal, _met(most <= 2) if group is items else ""])
    agents = next(row for row in results["latency"] if row["operation"] == "GET /agents" and row["clients"] == 8)
    rows.append(["local stack GET /agents p95, 8 clients", f"{agents['p95_ms']} ms", "<= 300 ms", _met(agents["p95_ms"] <= 300)])
    overhead = results["chat_overhead"]["overhead_ratio"]
    rows.append(["local chat with one tool call vs direct call", f"{overhead}x", "<= 20x", _met(overhead <= 20)])
    return rows


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def main() -> None:
    import json
    from pathlib import Path

    from bench.__main__ import print_goals, print_table

    before = load_average()
    results = measure()
    print_table(
        "Cold import of each handler module (CPU time, 7 interleaved rounds of fresh processes)",
        [("function", 34), ("median ms", 10), ("min ms", 8), ("x baseline (min)", 17)],
        [[row["function"], row["median_ms"], row["min_ms"], row["ratio_to_baseline"]] for row in results["cold_import"]],
    )
    print_table(
        "DynamoDB requests per API call",
        [("route", 32), ("requests", 9), ("operations", 0)],
        [[row["route"], row["requests"], ", ".join(row["operations"])] for row in results["dynamodb_requests"]],
    )
    print_goals(results, before)
    output = Path(__file__).parent / "results" / "goals.json"
    output.parent.mkdir(exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
