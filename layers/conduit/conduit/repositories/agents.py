"""Agents and their one-active-run lock (TABLE.md rows: agent, run).

An agent is keyed by its id, so the webhook function (which knows only the id)
and the run lock read it strongly consistently; an account lists its agents
through GSI1. The lock is two attributes of the agent item, `activeRunId` and
`activeRunLeaseUntil`, taken in the same transaction that writes the new run:
exactly one of several parallel starts can win it.
"""

from __future__ import annotations

from typing import Any

from conduit.platform.errors import ConduitError
from conduit.repositories.counters import create_counted, delete_counted
from conduit.repositories.base import ConditionsFailed, Page, Repository, to_item, write_transaction


def agent_key(agent_id: str) -> dict[str, str]:
    return {"PK": f"AGENT#{agent_id}", "SK": "AGENT"}


def prefetch_agent(path_parameters: dict[str, str], account_id: str) -> list[tuple[str, str]]:
    """The `/agents/{agentId}…` routes' agent, read by the gate (conduit.identity.gate.prefetch)."""
    key = agent_key(path_parameters["agentId"])
    return [(key["PK"], key["SK"])]


def agents_of(account_id: str) -> str:
    return f"AGENTS#{account_id}"


class AgentsRepository(Repository):
    def create(self, agent: dict[str, Any], max_agents: int | None) -> None:
        """Store a new agent, counted against the tier's agent limit (AGENT_LIMIT_REACHED)."""
        item = {
            **agent_key(agent["agentId"]),
            "GSI1PK": agents_of(agent["accountId"]),
            "GSI1SK": f"{agent['createdAt']}#{agent['agentId']}",
            **agent,
        }
        put = {"Put": {"TableName": self.table_name, "Item": to_item(item), "ConditionExpression": "attribute_not_exists(PK)"}}
        create_counted(self.client, self.table_name, agent["accountId"], "agents", max_agents, [put])

    def find(self, agent_id: str) -> dict[str, Any] | None:
        key = agent_key(agent_id)
        return self.get(key["PK"], key["SK"])

    def find_owned(self, account_id: str, agent_id: str) -> dict[str, Any]:
        """The account's agent; AGENT_NOT_FOUND for a missing one or another account's (existence does not leak)."""
        agent = self.find(agent_id) if len(agent_id) <= 64 else None
        if agent is None or agent["accountId"] != account_id:
            raise ConduitError("AGENT_NOT_FOUND")
        return agent

    def list_agents(self, account_id: str, limit: int, cursor: str | None) -> Page:
        return self.query_page(agents_of(account_id), index="GSI1", limit=limit, cursor=cursor, newest_first=True)

    def all_for_account(self, account_id: str) -> list[dict[str, Any]]:
        """Every agent of an account, oldest first (GSI1; /mcp lists them as tools)."""
        return self.query_all(agents_of(account_id), index="GSI1")

    def update(self, agent: dict[str, Any], values: dict[str, Any], remove: tuple[str, ...] = ()) -> dict[str, Any]:
        """Set (and remove) attributes of an agent that still exists; AGENT_NOT_FOUND if it is gone.
        Never touches the lock attributes, so an edit cannot free or steal a running agent."""
        return self.update_existing(agent_key(agent["agentId"]), values, remove, ConduitError("AGENT_NOT_FOUND"))

    def delete(self, agent: dict[str, Any]) -> None:
        delete = {
            "Delete": {
                "TableName": self.table_name,
                "Key": to_item(agent_key(agent["agentId"])),
                "ConditionExpression": "attribute_exists(PK)",
            }
        }
        try:
            delete_counted(self.client, self.table_name, agent["accountId"], "agents", [delete])
        except ConditionsFailed:
            raise ConduitError("AGENT_NOT_FOUND") from None

    # --- the one-active-run lock ------------------------------------------------
    def lock_and_put_run(self, agent_id: str, run_item: dict[str, Any], now: int, lease_until: int) -> bool:
        """Take the agent's run lock for `run_item` and write the run, all or nothing.
        False when another run holds an unexpired lock (or the agent is gone)."""
        lock = {
            "Update": {
                "TableName": self.table_name,
                "Key": to_item(agent_key(agent_id)),
                "UpdateExpression": "SET activeRunId = :run, activeRunLeaseUntil = :lease",
                "ConditionExpression": "attribute_exists(PK) AND (attribute_not_exists(activeRunId) OR activeRunLeaseUntil < :now)",
                "ExpressionAttributeValues": to_item({":run": run_item["runId"], ":lease": lease_until, ":now": now}),
            }
        }
        put = {"Put": {"TableName": self.table_name, "Item": to_item(run_item), "ConditionExpression": "attribute_not_exists(PK)"}}
        try:
            write_transaction(self.client, [lock, put])
        except ConditionsFailed:
            return False
        return True

    def release_run_lock(self, agent_id: str, run_id: str) -> bool:
        """Free the agent if `run_id` still holds it; idempotent (False when it does not)."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=to_item(agent_key(agent_id)),
                UpdateExpression="REMOVE activeRunId, activeRunLeaseUntil",
                ConditionExpression="activeRunId = :run",
                ExpressionAttributeValues=to_item({":run": run_id}),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

