"""The local emulator's DynamoDB writes and reads against the size of the table.

moto's TransactWriteItems deep-copies the whole table once per item it writes (to roll back
on failure), and its Query walks every item of every partition, so both cost more as the
table grows, and the local stack's one table grows over a test session. The emulator copies
only the items a transaction names and reads only the queried partition
(`shared.local.emulator`). This prints, in-process against moto, the median time of one
two-item transaction (a Put and an Update, as a chat turn's) and of one query of a
40-item partition, at several table sizes, with moto's own code and with the emulator's.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

SIZES = (100, 1_000, 5_000, 20_000)
RUNS = 7


def _fill(dynamodb: Any, table: str, start: int, stop: int) -> None:
    for first in range(start, stop, 25):
        items = [
            {"PutRequest": {"Item": {"PK": {"S": f"ACCOUNT#{n % 500}"}, "SK": {"S": f"ITEM#{n}"}, "body": {"S": "x" * 200}, "n": {"N": "1"}}}}
            for n in range(first, min(first + 25, stop))
        ]
        dynamodb.batch_write_item(RequestItems={table: items})


def _median_ms(request: Any) -> float:
    timings = []
    for run in range(RUNS):
        started = time.perf_counter()
        request(run)
        timings.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(timings), 1)


def _transaction(dynamodb: Any, table: str) -> Any:
    def request(run: int) -> None:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"PK": {"S": "BENCH"}, "SK": {"S": f"{run}"}}}},
                {"Update": {"TableName": table, "Key": {"PK": {"S": "ACCOUNT#1"}, "SK": {"S": "ITEM#1"}}, "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            ]
        )

    return request


def _query(dynamodb: Any, table: str) -> Any:
    def request(run: int) -> None:
        dynamodb.query(TableName=table, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "ACCOUNT#2"}})

    return request


def measure() -> list[dict[str, Any]]:
    import boto3
    from moto import mock_aws
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    from shared.local.emulator import queries_read_only_their_partition, transactions_copy_only_their_items

    table = "Bench"
    transact_by_moto, query_by_moto = DynamoDBBackend.transact_write_items, Table.query
    rows = []
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench")
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}, {"AttributeName": "SK", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        filled = 0
        try:
            for size in SIZES:
                _fill(dynamodb, table, filled, size)
                filled = size
                DynamoDBBackend.transact_write_items, Table.query = transact_by_moto, query_by_moto
                by_moto = {"transaction": _median_ms(_transaction(dynamodb, table)), "query": _median_ms(_query(dynamodb, table))}
                transactions_copy_only_their_items()
                queries_read_only_their_partition()
                by_emulator = {"transaction": _median_ms(_transaction(dynamodb, table)), "query": _median_ms(_query(dynamodb, table))}
                for request in ("transaction", "query"):
                    rows.append({"request": request, "items": size, "moto_ms": by_moto[request], "emulator_ms": by_emulator[request]})
        finally:
            DynamoDBBackend.transact_write_items, Table.query = transact_by_moto, query_by_moto
    return rows


if __name__ == "__main__":
    for row in measure():
        print(row)
