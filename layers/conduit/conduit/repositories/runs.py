"""Agent runs, their steps and their transcripts (TABLE.md rows: run, run step, run message).

Everything of a run shares the partition `RUN#<runId>`: the run (`RUN`), its
steps (`STEP#…`) and its transcript (`MSG#…`). Sort keys order them so one
Query from `RUN` onwards reads the run with its steps and not the transcript
("MSG#" < "RUN" < "STEP#"). An agent's runs are listed newest first through GSI1.
"""

from __future__ import annotations

from typing import Any

from conduit.repositories.base import Page, Repository, from_item, to_item

RUNNING = "running"


def run_pk(run_id: str) -> str:
    return f"RUN#{run_id}"


def runs_of(agent_id: str) -> str:
    return f"RUNS#{agent_id}"


def run_item(run: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a new run."""
    return {
        "PK": run_pk(run["runId"]),
        "SK": "RUN",
        "GSI1PK": runs_of(run["agentId"]),
        "GSI1SK": f"{run['startedAt']}#{run['runId']}",
        **run,
    }


def step_sk(round_number: int, call_index: int | None = None) -> str:
    """A model turn sorts before the tool calls it asked for."""
    return f"STEP#{round_number:03d}#0" if call_index is None else f"STEP#{round_number:03d}#1#{call_index:03d}"


def message_sk(round_number: int, call_index: int | None = None) -> str:
    """The transcript in conversation order: each round's model message, then its tool results by call."""
    return f"MSG#{round_number:03d}#0" if call_index is None else f"MSG#{round_number:03d}#1#{call_index:03d}"


class RunsRepository(Repository):
    def run_with_steps(self, run_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The run and its steps in order, in one consistent Query."""
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "PK = :pk AND SK >= :run",
            "ExpressionAttributeValues": to_item({":pk": run_pk(run_id), ":run": "RUN"}),
            "ConsistentRead": True,
        }
        while True:
            response = self.client.query(**request)
            items.extend(from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        run = next((item for item in items if item["SK"] == "RUN"), None)
        return run, [item for item in items if item["SK"].startswith("STEP#")]

    def find(self, run_id: str) -> dict[str, Any] | None:
        return self.get(run_pk(run_id), "RUN")

    def list_runs(self, agent_id: str, limit: int, cursor: str | None) -> Page:
        return self.query_page(runs_of(agent_id), index="GSI1", limit=limit, cursor=cursor, newest_first=True)

    def put_step(self, run_id: str, sk: str, step: dict[str, Any]) -> None:
        """Record a step; a retried step overwrites its own record."""
        self.client.put_item(TableName=self.table_name, Item=to_item({"PK": run_pk(run_id), "SK": sk, **step}))

    def put_message(self, run_id: str, sk: str, message: dict[str, Any]) -> None:
        self.client.put_item(TableName=self.table_name, Item=to_item({"PK": run_pk(run_id), "SK": sk, **message}))

    def message(self, run_id: str, sk: str) -> dict[str, Any] | None:
        return self.get(run_pk(run_id), sk)

    def transcript(self, run_id: str) -> list[dict[str, Any]]:
        """Every message of the run in order (bounded: at most 20 rounds of model turns and their calls)."""
        return self.query_all(run_pk(run_id), sk_prefix="MSG#")

    def end(self, run_id: str, values: dict[str, Any]) -> bool:
        """Move a running run to its end state; False when it has already ended (each run ends once)."""
        ended = self.update_where(
            {"PK": run_pk(run_id), "SK": "RUN"},
            values,
            condition="#status = :running",
            condition_names={"#status": "status"},
            condition_values={":running": RUNNING},
        )
        return ended is not None
