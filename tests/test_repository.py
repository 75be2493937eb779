"""The repository base: consistent reads and cursor pagination that cannot be pointed elsewhere."""

from __future__ import annotations

import pytest

from conduit.platform.errors import ConduitError
from conduit.repositories.base import Repository, encode_cursor, to_item


@pytest.fixture
def repository(aws):
    repository = Repository()
    for number in range(45):
        repository.client.put_item(
            TableName=repository.table_name,
            Item=to_item({"PK": "LIST#a", "SK": f"ITEM#{number:03d}", "n": number}),
        )
    repository.client.put_item(
        TableName=repository.table_name, Item=to_item({"PK": "LIST#b", "SK": "ITEM#000", "n": -1})
    )
    return repository


def test_get(repository):
    assert repository.get("LIST#a", "ITEM#007")["n"] == 7
    assert repository.get("LIST#a", "ITEM#999") is None


def test_pages_cover_the_partition_once_and_the_last_has_no_cursor(repository):
    seen, cursor, pages = [], None, 0
    while True:
        page = repository.query_page("LIST#a", sk_prefix="ITEM#", limit=20, cursor=cursor)
        seen += [item["n"] for item in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(range(45))
    assert pages == 3


def test_exact_multiple_has_no_empty_trailing_page(repository):
    first = repository.query_page("LIST#a", limit=45)
    assert len(first.items) == 45 and first.next_cursor is None


def test_newest_first(repository):
    page = repository.query_page("LIST#a", limit=3, newest_first=True)
    assert [item["n"] for item in page.items] == [44, 43, 42]
    following = repository.query_page("LIST#a", limit=3, newest_first=True, cursor=page.next_cursor)
    assert [item["n"] for item in following.items] == [41, 40, 39]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        "e30",  # {}
        encode_cursor({"PK": "LIST#b", "SK": "ITEM#000"}, ("PK", "SK")),  # another partition
        "eyJQSyI6MX0",  # {"PK":1}
    ],
)
def test_a_foreign_or_forged_cursor_is_a_validation_error(repository, cursor):
    with pytest.raises(ConduitError) as raised:
        repository.query_page("LIST#a", limit=5, cursor=cursor)
    assert raised.value.code == "VALIDATION_ERROR"
    assert raised.value.details == [{"field": "cursor", "message": "is not a cursor returned by this list"}]


def test_a_session_comes_with_its_last_messages_in_one_query(aws):
    from conduit.platform.aws import dynamodb_client
    from conduit.repositories.sessions import SessionsRepository

    sessions = SessionsRepository()
    token = "sess_" + "q" * 40
    session = {"sessionToken": token, "accountId": "usr_1", "createdAt": "2026-12-03T00:00:00.000000Z", "expiresAt": 4102444800}
    sessions.create(session)
    for index in range(5):
        at = f"2026-12-03T00:00:0{index}.000000Z"
        sessions.append_exchange(session, [{"role": "user", "content": f"q{index}", "createdAt": at, "seq": 0},
                                           {"role": "assistant", "content": f"a{index}", "createdAt": at, "seq": 1}])
        sessions.record_abort(session, {"exchangeId": f"chat_{index}", "createdAt": at, "accountId": "usr_1"})
    calls: list[str] = []
    dynamodb_client().meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    found, recent = sessions.find_with_recent(token, 3)
    assert calls == ["Query"]
    assert found is not None and found["accountId"] == "usr_1"
    assert [message["content"] for message in recent] == ["a3", "q4", "a4"]  # the last three, oldest first; no aborts
    found, recent = sessions.find_with_recent(token, 50)
    assert len(recent) == 10 and recent[0]["content"] == "q0"
    assert sessions.find_with_recent("sess_" + "n" * 40, 3) == (None, [])


def test_a_clients_error_classes_are_built_when_it_is_made(aws):
    """conduit.platform.aws builds each client's modeled exceptions with the client: botocore builds them on
    the first `client.exceptions` without a lock, and threads racing there could catch with another set of
    classes than the one an error was raised as."""
    from conduit.platform import aws as aws_clients

    for make in (aws_clients.dynamodb_client, aws_clients.kms_client, aws_clients.stepfunctions_client):
        client = make()
        assert client._exceptions is not None  # botocore's cache behind the `exceptions` property
        assert client.exceptions is client._exceptions
