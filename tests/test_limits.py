"""Counted limits hold exactly under concurrency; features need the right tier."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conduit.platform.errors import ConduitError
from conduit.accounts.features import require_feature
from conduit.repositories.counters import (
    LIMIT_CODES,
    count_down_item,
    count_up_item,
    create_counted,
    current_count,
    delete_counted,
    limit_code,
)
from conduit.repositories.accounts import account_pk
from conduit.repositories.base import ConditionsFailed
from conduit.platform.aws import dynamodb_client
from conduit.repositories.base import to_item
from conduit.platform.settings import get_settings
from conduit.platform.tiers import DEFAULT_TIERS_FILE, load_tiers

TIERS = load_tiers(DEFAULT_TIERS_FILE)


@pytest.fixture
def table(aws):
    return dynamodb_client(), get_settings().table_name


def put_agent(table_name: str, account_id: str, agent_id: str) -> dict:
    item = to_item({"PK": account_pk(account_id), "SK": f"AGENT#{agent_id}", "name": agent_id})
    return {"Put": {"TableName": table_name, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}


def delete_agent(table_name: str, account_id: str, agent_id: str) -> dict:
    key = to_item({"PK": account_pk(account_id), "SK": f"AGENT#{agent_id}"})
    return {"Delete": {"TableName": table_name, "Key": key, "ConditionExpression": "attribute_exists(PK)"}}


def create_agent(table, account_id: str, agent_id: str, maximum: int | None) -> None:
    client, table_name = table
    create_counted(client, table_name, account_id, "agents", maximum, [put_agent(table_name, account_id, agent_id)])


def agents_stored(table, account_id: str) -> int:
    client, table_name = table
    response = client.query(
        TableName=table_name,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
        ExpressionAttributeValues=to_item({":pk": account_pk(account_id), ":sk": "AGENT#"}),
        ConsistentRead=True,
    )
    return response["Count"]


def test_parallel_creates_admit_exactly_the_limit(table):
    account_id, limit = "acc", 5

    def create(number: int) -> str:
        try:
            create_agent(table, account_id, f"agent-{number}", limit)
            return "created"
        except ConduitError as error:
            return error.code

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(create, range(20)))
    assert outcomes.count("created") == limit and outcomes.count("AGENT_LIMIT_REACHED") == 20 - limit
    assert current_count(*table, account_id, "agents") == limit == agents_stored(table, account_id)


def test_a_failed_resource_condition_is_told_apart_and_leaves_the_counter_alone(table):
    create_agent(table, "acc", "a1", 5)
    with pytest.raises(ConditionsFailed) as raised:
        create_agent(table, "acc", "a1", 5)  # already exists
    assert raised.value.indexes == {0}
    assert current_count(*table, "acc", "agents") == 1


def test_the_resource_failure_wins_when_both_fail(table):
    create_agent(table, "acc", "a1", 1)
    with pytest.raises(ConditionsFailed):
        create_agent(table, "acc", "a1", 1)  # exists AND over the limit: "exists" is the useful answer


def test_deleting_counts_down_and_frees_a_place(table):
    client, table_name = table
    create_agent(table, "acc", "a1", 1)
    with pytest.raises(ConduitError, match="AGENT_LIMIT_REACHED"):
        create_agent(table, "acc", "a2", 1)
    delete_counted(client, table_name, "acc", "agents", [delete_agent(table_name, "acc", "a1")])
    assert current_count(client, table_name, "acc", "agents") == 0
    create_agent(table, "acc", "a2", 1)
    assert current_count(client, table_name, "acc", "agents") == 1


def test_deleting_a_missing_resource_is_told_apart_and_leaves_the_counter_alone(table):
    client, table_name = table
    create_agent(table, "acc", "a1", 3)
    with pytest.raises(ConditionsFailed) as raised:
        delete_counted(client, table_name, "acc", "agents", [delete_agent(table_name, "acc", "nope")])
    assert raised.value.indexes == {0}
    assert current_count(client, table_name, "acc", "agents") == 1


def test_a_counter_never_goes_below_zero(table):
    client, table_name = table
    client.put_item(TableName=table_name, Item=put_agent(table_name, "acc", "uncounted")["Put"]["Item"])
    with pytest.raises(RuntimeError, match="already 0"):
        delete_counted(client, table_name, "acc", "agents", [delete_agent(table_name, "acc", "uncounted")])
    assert agents_stored(table, "acc") == 1  # nothing was deleted


def test_parallel_deletes_count_down_exactly(table):
    client, table_name = table
    for number in range(10):
        create_agent(table, "acc", f"a{number}", None)

    def delete(number: int) -> None:
        delete_counted(client, table_name, "acc", "agents", [delete_agent(table_name, "acc", f"a{number}")])

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(delete, range(7)))
    assert current_count(client, table_name, "acc", "agents") == 3 == agents_stored(table, "acc")


def test_a_limit_of_zero_admits_nothing(table):
    with pytest.raises(ConduitError, match="AGENT_LIMIT_REACHED"):
        create_agent(table, "acc", "a1", 0)
    assert current_count(*table, "acc", "agents") == 0 and agents_stored(table, "acc") == 0


def test_no_maximum_means_unlimited(table):
    assert "ConditionExpression" not in count_up_item("acc", "agents", None)["Update"]
    for number in range(30):
        create_agent(table, "acc", f"a{number}", None)
    assert current_count(*table, "acc", "agents") == 30


def test_the_tier_sets_the_maximum(table):
    free = TIERS.tier("free")
    client, table_name = table
    for number in range(free.limit("agents")):
        create_agent(table, "acc", f"a{number}", free.limit("agents"))
    with pytest.raises(ConduitError, match="AGENT_LIMIT_REACHED"):
        create_agent(table, "acc", "one-more", free.limit("agents"))
    with pytest.raises(ConduitError, match="FEATURE_LIMIT_REACHED"):  # free has no workspace members at all
        create_counted(
            client, table_name, "acc", "workspaceMembers", free.limit("workspaceMembers"),
            [put_agent(table_name, "acc", "member")],
        )


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("agents", "AGENT_LIMIT_REACHED"),
        ("sites", "VAULT_LIMIT_REACHED"),
        ("workspaceMembers", "FEATURE_LIMIT_REACHED"),
        ("schedules", "FEATURE_LIMIT_REACHED"),  # any other counted limit
    ],
)
def test_each_limit_has_its_code(table, name, code):
    client, table_name = table
    assert limit_code(name) == code
    with pytest.raises(ConduitError) as raised:
        create_counted(client, table_name, "acc", name, 0, [put_agent(table_name, "acc", uuid.uuid4().hex)])
    assert raised.value.code == code
    assert set(LIMIT_CODES) == {"agents", "sites", "workspaceMembers"}


def test_an_explicit_code_wins(table):
    client, table_name = table
    with pytest.raises(ConduitError) as raised:
        create_counted(
            client, table_name, "acc", "agents", 0, [put_agent(table_name, "acc", "a")], "FEATURE_LIMIT_REACHED"
        )
    assert raised.value.code == "FEATURE_LIMIT_REACHED"


def test_count_down_item_refuses_to_pass_zero():
    update = count_down_item("acc", "agents", table="t")["Update"]
    assert update["ConditionExpression"] == "#count > :zero"
    assert update["ExpressionAttributeNames"] == {"#count": "count"}  # COUNT is a reserved word


def test_features_need_the_tier():
    require_feature(TIERS.tier("free"), "chat")
    require_feature(TIERS.tier("pro"), "webhooks")
    require_feature(TIERS.tier("team"), "workspaces")
    with pytest.raises(ConduitError) as raised:
        require_feature(TIERS.tier("free"), "webhooks")
    assert raised.value.code == "TIER_REQUIRED"
    # The message names the feature, the caller's tier and the tiers that have it.
    assert raised.value.message == "The webhooks feature is not in the free tier; it is in: pro, harness, team"
    with pytest.raises(ConduitError) as raised:
        require_feature(TIERS.tier("harness"), "workspaces")
    assert raised.value.code == "WORKSPACE_REQUIRED"  # API.md §10: a workspace needs the Team plan
