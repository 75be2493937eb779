"""Fixed-window rate limits on DynamoDB counters: one conditional write per check.

The window is part of the key (RATE#<scope>#<subject>#<windowStart>), so a new
window starts at zero without relying on TTL (TTL only cleans up). The write
increments only while the count is under the limit, so with N parallel
requests exactly min(N, limit) are admitted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from conduit.errors import ConduitError
from conduit.repositories.base import Repository


@dataclass(frozen=True, slots=True)
class RateWindow:
    limit: int
    remaining: int
    reset_epoch: int  # when the window ends

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_epoch),
        }


class RateLimiter(Repository):
    def hit(
        self, scope: str, subject: str, limit: int, *, window_seconds: int = 60, code: str = "RATE_LIMITED"
    ) -> RateWindow:
        """Count one request; raise `code` (429) with Retry-After when the window is full."""
        now = time.time()
        window_start = int(now // window_seconds) * window_seconds
        reset = window_start + window_seconds
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key={"PK": {"S": f"RATE#{scope}#{subject}#{window_start}"}, "SK": {"S": "RATE"}},
                UpdateExpression="ADD #count :one SET expiresAt = if_not_exists(expiresAt, :expires)",
                ConditionExpression="attribute_not_exists(#count) OR #count < :limit",
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":expires": {"N": str(reset + window_seconds)},
                },
                ReturnValues="UPDATED_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            window = RateWindow(limit=limit, remaining=0, reset_epoch=reset)
            retry_after = max(1, math.ceil(reset - now))
            raise ConduitError(code, headers={"Retry-After": str(retry_after), **window.headers()}) from None
        count = int(response["Attributes"]["count"]["N"])
        return RateWindow(limit=limit, remaining=max(0, limit - count), reset_epoch=reset)
