"""The emulator serializes calls into moto, so conditional writes are atomic under parallel clients."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from shared.local.emulator import Emulator

pytestmark = pytest.mark.stack


def test_parallel_conditional_decrements_admit_exactly_the_balance(template):
    emulator = Emulator()
    emulator.start()
    try:
        emulator.create_resources(template)
        setup = emulator.client("dynamodb")
        setup.put_item(TableName="ConduitTable", Item={"PK": {"S": "C"}, "SK": {"S": "C"}, "n": {"N": "7"}})

        def decrement(_):
            client = emulator.client("dynamodb")
            try:
                client.update_item(
                    TableName="ConduitTable",
                    Key={"PK": {"S": "C"}, "SK": {"S": "C"}},
                    UpdateExpression="ADD n :minus",
                    ConditionExpression="n >= :one",
                    ExpressionAttributeValues={":minus": {"N": "-1"}, ":one": {"N": "1"}},
                )
                return True
            except ClientError as error:
                assert error.response["Error"]["Code"] == "ConditionalCheckFailedException"
                return False

        with ThreadPoolExecutor(max_workers=16) as executor:
            admitted = sum(executor.map(decrement, range(40)))
        final = setup.get_item(TableName="ConduitTable", Key={"PK": {"S": "C"}, "SK": {"S": "C"}})["Item"]
        assert admitted == 7
        assert final["n"] == {"N": "0"}
    finally:
        emulator.stop()
