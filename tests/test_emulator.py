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


def test_plain_attribute_values_are_written_as_moto_would_write_them(aws, monkeypatch):
    """The emulator's fast path for DynamoDB AttributeValues (emulator._fast_attribute_values)
    answers exactly what moto's own serializer does, binary values included (those keep moto's path)."""
    import boto3
    from moto.core.serialize import BaseJSONSerializer

    from conduit.platform.settings import get_settings
    from shared.local.emulator import _fast_attribute_values

    table, dynamodb = get_settings().table_name, boto3.client("dynamodb")
    nested = {"L": [{"S": "y"}, {"NULL": True}, {"BOOL": False}, {"SS": ["a", "b"]}, {"NS": ["1", "2.5"]}, {"M": {}}]}
    dynamodb.put_item(
        TableName=table,
        Item={"PK": {"S": "A"}, "SK": {"S": "1"}, "n": {"N": "1.5"}, "m": {"M": {"x": nested}}, "b": {"B": b"\x00\x01"}, "bs": {"BS": [b"z"]}},
    )
    dynamodb.put_item(TableName=table, Item={"PK": {"S": "A"}, "SK": {"S": "2"}, "e": {"M": {}}, "l": {"L": []}})

    def answers() -> list:
        key = {"PK": {"S": "A"}, "SK": {"S": "1"}}
        return [
            dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"],
            dynamodb.query(TableName=table, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "A"}})["Items"],
            dynamodb.batch_get_item(RequestItems={table: {"Keys": [key, {"PK": {"S": "A"}, "SK": {"S": "2"}}]}})["Responses"],
            dynamodb.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": key}}])["Responses"],
            dynamodb.update_item(
                TableName=table, Key={"PK": {"S": "Z"}, "SK": {"S": "Z"}}, UpdateExpression="SET v = :v",
                ExpressionAttributeValues={":v": {"M": {"q": {"S": "r"}}}}, ReturnValues="ALL_NEW",
            )["Attributes"],
        ]

    by_moto = answers()
    monkeypatch.setattr(BaseJSONSerializer, "_serialize_type_structure", BaseJSONSerializer._serialize_type_structure)
    _fast_attribute_values()  # undone by monkeypatch after the test
    assert BaseJSONSerializer._serialize_type_structure.__name__ == "serialize_structure"
    assert answers() == by_moto
