"""`make bench`: print every benchmark as a table, and write them as JSON to bench/results/latest.json."""

from __future__ import annotations

import json
import platform
import warnings
from pathlib import Path

from bench import chat_overhead, cold_import, dynamodb_requests, latency


def main() -> None:
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    results = {"machine": {"python": platform.python_version(), "cpu": platform.machine()}}
    results["cold_import"] = cold_import.measure()
    print("Cold import of each handler module (median of 7 fresh processes)")
    print(f"{'function':<34}{'median ms':>10}{'x baseline':>12}")
    for row in results["cold_import"]:
        print(f"{row['function']:<34}{row['median_ms']:>10}{row['ratio_to_baseline']:>12}")
    results["dynamodb_requests"] = dynamodb_requests.measure()
    print("\nDynamoDB requests per API call (authenticated unless login/refresh)")
    print(f"{'route':<26}{'requests':>9}  operations")
    for row in results["dynamodb_requests"]:
        print(f"{row['route']:<26}{row['requests']:>9}  {', '.join(row['operations'])}")
    results["chat_overhead"] = overhead = chat_overhead.measure()
    print(f"\nOne chat tool call through the local stack vs the same tool called directly (median of {overhead['runs']})")
    print(f"chat: {overhead['chat_tool_call_ms']} ms   direct: {overhead['direct_tool_call_ms']} ms   ratio: {overhead['overhead_ratio']}x")
    results["latency"] = latency.measure()
    print("\nLatency of the local stack (each client its own user; a run start is timed to its 202)")
    print(f"{'operation':<30}{'clients':>8}{'requests':>9}{'p50 ms':>9}{'p95 ms':>9}{'req/s':>8}")
    for row in results["latency"]:
        print(f"{row['operation']:<30}{row['clients']:>8}{row['requests']:>9}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['requests_per_second']:>8}")
    output = Path(__file__).parent / "results" / "latest.json"
    output.parent.mkdir(exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {output}")


if __name__ == "__main__":
    main()
