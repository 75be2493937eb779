"""Fixed-window request counters (TABLE.md: `RATE#<scope>#<subject>#<windowStart>` / `RATE`).

The window is part of the key, so a new window starts at zero without relying on TTL (TTL only
cleans up). The write increments only while the count is under the limit, so with N parallel
requests exactly min(N, limit) are admitted.
"""

from __future__ import annotations

from conduit.repositories.base import Repository, update_request


class RateWindowsRepository(Repository):
    def count(self, scope: str, subject: str, window_start: int, limit: int, expires_at: int) -> int | None:
        """Add one to the window's count if it is under `limit`: the new count, or None when full."""
        request = update_request(
            self.table_name,
            {"PK": f"RATE#{scope}#{subject}#{window_start}", "SK": "RATE"},
            add={"count": 1},
            set_if_absent={"expiresAt": expires_at},
            condition="attribute_not_exists(#count) OR #count < :limit",
            condition_values={":limit": limit},
        )
        try:
            response = self.client.update_item(**request, ReturnValues="UPDATED_NEW")
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return int(response["Attributes"]["count"]["N"])
