"""`make bench`: print every benchmark as a table, and write them as JSON to bench/results/latest.json."""

from __future__ import annotations

import json
import platform
import warnings
from pathlib import Path

from bench import chat_overhead, cold_import, credit_holds, dynamodb_requests, first_text, goals, latency, mcp_call, emulator_table_size


def print_table(title: str, columns: list[tuple[str, int]], rows: list[list[object]]) -> None:
    """A titled table: the first column left-aligned in its width, the others right-aligned;
    a column of width 0 comes last, unpadded, after two spaces."""

    def line(cells: list[object]) -> str:
        text = ""
        for index, (cell, (_, width)) in enumerate(zip(cells, columns)):
            text += f"{cell!s:<{width}}" if index == 0 else (f"  {cell}" if width == 0 else f"{cell!s:>{width}}")
        return text

    print(f"\n{title}")
    print(line([header for header, _ in columns]))
    for row in rows:
        print(line(row))


def print_goals(results: dict, load_before: str) -> None:
    """The issue-22 table, with the load average before and after the run (2 shared cores)."""
    print_table(
        f"Performance goals (issue 22); load average before: {load_before}, after: {goals.load_average()}",
        [("figure", 62), ("measured", 62), ("goal", 10), ("", 0)],
        goals.table(results),
    )


def main() -> None:
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    load_before = goals.load_average()
    results = {"machine": {"python": platform.python_version(), "cpu": platform.machine()}}
    results["cold_import"] = cold_import.measure()
    print_table(
        "Cold import of each handler module (CPU time, 7 interleaved rounds of fresh processes)",
        [("function", 34), ("median ms", 10), ("min ms", 8), ("x baseline (min)", 17)],
        [[row["function"], row["median_ms"], row["min_ms"], row["ratio_to_baseline"]] for row in results["cold_import"]],
    )
    results["bytecode"] = cold_import.bytecode_effect()
    print_table(
        "Cold import with the modules' bytecode and compiled from source (min ms; layers/conduit/Makefile ships bytecode)",
        [("target", 34), ("with bytecode", 14), ("from source", 12)],
        [[row["target"], row["with_bytecode_ms"], row["from_source_ms"]] for row in results["bytecode"]],
    )
    results["dynamodb_requests"] = dynamodb_requests.measure()
    print_table(
        "DynamoDB requests per API call (authenticated unless login/refresh)",
        [("route", 26), ("requests", 9), ("operations", 0)],
        [[row["route"], row["requests"], ", ".join(row["operations"])] for row in results["dynamodb_requests"]],
    )
    timed = [row for row in results["dynamodb_requests"] if "warm" in row]
    print_table(
        f"Warm path in-process against moto, median ms of {dynamodb_requests.TIMED_RUNS}: ours, botocore's client side, moto (for DynamoDB)",
        [("route", 40), ("total", 7), ("ours", 7), ("botocore", 9), ("moto", 7)],
        [[row["route"], *(row["warm"][part] for part in ("total_ms", "ours_ms", "botocore_ms", "moto_ms"))] for row in timed],
    )
    results["chat_overhead"] = overhead = chat_overhead.measure()
    print(f"\nOne chat tool call through the local stack vs the same tool called directly (median of {overhead['runs']})")
    print(f"chat: {overhead['chat_tool_call_ms']} ms   direct: {overhead['direct_tool_call_ms']} ms   ratio: {overhead['overhead_ratio']}x")
    results["first_text"] = first = first_text.measure()
    print(f"\nProvider's first byte -> client's first `text` event, streamed chat through the local stack ({first['runs']} runs, warm)")
    print(f"median: {first['median_ms']} ms   p95: {first['p95_ms']} ms   min: {first['min_ms']} ms   max: {first['max_ms']} ms")
    results["mcp_call"] = mcp_call.measure()
    print_table(
        "One MCP tool call as Conduit makes it vs a bare tools/call, loopback SDK server (medians, interleaved)",
        [("server", 26), ("direct ms", 10), ("conduit ms", 11), ("added ms", 9)],
        [[row["server"], row["direct_ms"], row["conduit_ms"], row["added_ms"]] for row in results["mcp_call"]["rows"]],
    )
    results["latency"] = latency.measure()
    print_table(
        "Latency of the local stack (each client its own user; a run start is timed to its 202)",
        [("operation", 30), ("clients", 8), ("requests", 9), ("p50 ms", 9), ("p95 ms", 9), ("req/s", 8)],
        [
            [row["operation"], row["clients"], row["requests"], row["p50_ms"], row["p95_ms"], row["requests_per_second"]]
            for row in results["latency"]
        ],
    )
    results["credit_holds"] = holds = credit_holds.measure()
    print_table(
        "Credits path of one model turn: DynamoDB requests",
        [("turn", 30), ("requests", 9), ("operations", 0)],
        [[row["turn"], row["requests"], ", ".join(row["operations"])] for row in holds["requests"]],
    )
    print_table(
        "Priced POST /chat (local:echo) from concurrent clients: one hot account vs one account each",
        [("layout", 14), ("clients", 8), ("exchanges", 10), ("ok", 6), ("exch/s", 8)],
        [[row["layout"], row["clients"], row["exchanges"], row["ok"], row["exchanges_per_second"]] for row in holds["throughput"]],
    )
    results["emulator_table_size"] = emulator_table_size.measure()
    print_table(
        "DynamoDB in the local emulator by table size: a two-item transaction, a query of one partition (median ms, in-process moto)",
        [("request", 12), ("items in the table", 19), ("moto's own", 11), ("emulator", 9)],
        [[row["request"], row["items"], row["moto_ms"], row["emulator_ms"]] for row in results["emulator_table_size"]],
    )
    print_goals(results, load_before)
    output = Path(__file__).parent / "results" / "latest.json"
    output.parent.mkdir(exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {output}")


if __name__ == "__main__":
    main()
