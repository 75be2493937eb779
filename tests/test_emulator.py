"""The emulator serializes calls into moto, so conditional writes are atomic under parallel clients."""

from __future__ import annotations

import json
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


def test_transactions_roll_back_what_they_wrote_as_moto_does(aws, monkeypatch):
    """The emulator's transactions copy only the items they name (emulator.transactions_copy_only_their_items):
    every answer and every item afterwards is what moto's own whole-table copy gives, and the table is
    never replaced by a copy of itself."""
    import boto3
    from moto.backends import get_backend
    from moto.dynamodb.models import DynamoDBBackend

    from conduit.platform.settings import get_settings
    from shared.local.emulator import transactions_copy_only_their_items

    table, dynamodb = get_settings().table_name, boto3.client("dynamodb")

    def tables() -> dict:
        return get_backend("dynamodb")["123456789012"]["us-east-1"].tables

    def scenario(partition: str) -> list:
        def key(sort: str) -> dict:
            return {"PK": {"S": partition}, "SK": {"S": sort}}

        def put(sort: str, **extra) -> dict:
            return {"Put": {"TableName": table, "Item": {**key(sort), **extra}}}

        def add_one(sort: str) -> dict:
            return {"Update": {"TableName": table, "Key": key(sort), "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}}

        dynamodb.put_item(TableName=table, Item={**key("1"), "n": {"N": "1"}})
        dynamodb.put_item(TableName=table, Item={**key("2"), "n": {"N": "5"}})
        transactions = [
            [put("3", n={"N": "0"}), add_one("1"), {"Delete": {"TableName": table, "Key": key("2")}}],  # succeeds
            [put("4"), add_one("1"), {"ConditionCheck": {"TableName": table, "Key": key("3"), "ConditionExpression": "n > :n", "ExpressionAttributeValues": {":n": {"N": "9"}}, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}],
            [add_one("1"), put("5"), add_one("1")],  # the same item twice
            [put("6"), add_one("3"), {"Update": {"TableName": table, "Key": key("1"), "UpdateExpression": "SET n = n + :s", "ExpressionAttributeValues": {":s": {"S": "x"}}}}],
            [put("1", fresh={"BOOL": True}), {"Delete": {"TableName": table, "Key": key("3"), "ConditionExpression": "attribute_not_exists(n)"}}],
        ]
        answers = []
        for items in transactions:
            before = tables()[table]
            try:
                dynamodb.transact_write_items(TransactItems=items)
                answers.append("ok")
            except ClientError as error:
                answers.append((error.response["Error"]["Code"], error.response.get("CancellationReasons")))
            if getattr(DynamoDBBackend.transact_write_items, "copies_only_its_items", False):
                assert tables()[table] is before
        stored = dynamodb.query(TableName=table, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": partition}})["Items"]
        return json.loads(json.dumps([answers, stored]).replace(partition, "P"))

    by_moto = scenario("moto")
    assert by_moto[0][0] == "ok" and all(answer != "ok" for answer in by_moto[0][1:])
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", DynamoDBBackend.transact_write_items)
    transactions_copy_only_their_items()  # undone by monkeypatch after the test
    assert scenario("fast") == by_moto


def test_table_queries_answer_as_moto_does(aws, monkeypatch):
    """The emulator's table queries read only their partition (emulator.queries_read_only_their_partition):
    conditions, order, pages, filters and projections answer exactly as moto's own walk of every item,
    and index queries keep moto's path."""
    import boto3
    from moto.dynamodb.models.table import Table

    from conduit.platform.settings import get_settings
    from shared.local.emulator import queries_read_only_their_partition

    table, dynamodb = get_settings().table_name, boto3.client("dynamodb")
    for partition in ("A", "B", "C"):
        for n in range(12):
            item = {"PK": {"S": partition}, "SK": {"S": f"ITEM#{n:02}"}, "n": {"N": str(n)}, "GSI1PK": {"S": f"G{n % 2}"}, "GSI1SK": {"S": f"{partition}{n:02}"}}
            dynamodb.put_item(TableName=table, Item=item)
    queries = [
        {"KeyConditionExpression": "PK = :p", "ExpressionAttributeValues": {":p": {"S": "B"}}},
        {"KeyConditionExpression": "PK = :p", "ExpressionAttributeValues": {":p": {"S": "nobody"}}},
        {"KeyConditionExpression": "PK = :p AND begins_with(SK, :s)", "ExpressionAttributeValues": {":p": {"S": "A"}, ":s": {"S": "ITEM#1"}}, "ScanIndexForward": False},
        {"KeyConditionExpression": "PK = :p AND SK BETWEEN :a AND :b", "ExpressionAttributeValues": {":p": {"S": "C"}, ":a": {"S": "ITEM#03"}, ":b": {"S": "ITEM#08"}}, "FilterExpression": "n > :n", "ProjectionExpression": "SK, n", "ExpressionAttributeValues": {":p": {"S": "C"}, ":a": {"S": "ITEM#03"}, ":b": {"S": "ITEM#08"}, ":n": {"N": "4"}}},
        {"KeyConditionExpression": "PK = :p", "ExpressionAttributeValues": {":p": {"S": "A"}}, "Limit": 5, "ExclusiveStartKey": {"PK": {"S": "A"}, "SK": {"S": "ITEM#04"}}},
        {"KeyConditionExpression": "PK = :p", "ExpressionAttributeValues": {":p": {"S": "B"}}, "Limit": 4, "ScanIndexForward": False, "Select": "COUNT"},
        {"IndexName": "GSI1", "KeyConditionExpression": "GSI1PK = :g", "ExpressionAttributeValues": {":g": {"S": "G1"}}, "Limit": 7},
    ]

    def answers() -> list:
        results = []
        for query in queries:
            answer = dynamodb.query(TableName=table, **query)
            results.append({name: answer.get(name) for name in ("Items", "Count", "ScannedCount", "LastEvaluatedKey")})
        return results

    by_moto = answers()
    monkeypatch.setattr(Table, "query", Table.query)
    queries_read_only_their_partition()  # undone by monkeypatch after the test
    assert Table.query.__name__ == "query_one_partition"
    assert answers() == by_moto
