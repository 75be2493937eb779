"""EventBridge Scheduler's clock in the local stack (shared/local/scheduler.py): the next-fire
rules with an injected clock, the loop against moto's Scheduler, and a rate(1 minute) agent
that runs twice through the stack."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from shared.local.scheduler import Scheduler, next_fire, to_croniter

T0 = datetime(2026, 12, 3, 7, 0, 30, tzinfo=UTC)  # a Thursday


# --- next fire --------------------------------------------------------------------------------
def test_a_rate_fires_at_creation_then_every_interval():
    assert next_fire("rate(1 minute)", None, T0 - timedelta(microseconds=1), T0) == T0
    assert next_fire("rate(1 minute)", None, T0, T0) == T0 + timedelta(minutes=1)
    assert next_fire("rate(5 minutes)", None, T0 + timedelta(minutes=7), T0) == T0 + timedelta(minutes=10)
    assert next_fire("rate(2 hours)", None, T0, T0) == T0 + timedelta(hours=2)
    assert next_fire("rate(1 day)", "Europe/Paris", T0, T0) == T0 + timedelta(days=1)


def test_cron_uses_aws_fields_and_the_time_zone():
    # 09:00 in Paris is 08:00 UTC in winter.
    assert next_fire("cron(0 9 * * ? *)", "Europe/Paris", T0, T0) == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    # AWS's day of week: 2 = Monday (croniter: 1).
    assert next_fire("cron(0 10 ? * 2 *)", None, T0, T0) == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert next_fire("cron(0 10 ? * MON-FRI *)", None, T0, T0) == datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert next_fire("cron(0/15 * * * ? *)", None, T0, T0) == datetime(2026, 12, 3, 7, 15, tzinfo=UTC)


def test_cron_special_characters():
    assert next_fire("cron(0 10 L * ? *)", None, T0, T0) == datetime(2026, 12, 31, 10, 0, tzinfo=UTC)
    assert next_fire("cron(0 10 15W * ? *)", None, T0, T0) == datetime(2026, 12, 15, 10, 0, tzinfo=UTC)
    assert next_fire("cron(0 10 ? * 2#2 *)", None, T0, T0) == datetime(2026, 12, 14, 10, 0, tzinfo=UTC)  # 2nd Monday
    assert next_fire("cron(0 10 ? * 6L *)", None, T0, T0) == datetime(2026, 12, 25, 10, 0, tzinfo=UTC)  # last Friday
    assert to_croniter("0 10 ? * 1,7 *") == ("0 10 * * 0,6", "*")


def test_cron_year_field():
    assert next_fire("cron(0 0 1 1 ? 2028)", None, T0, T0) == datetime(2028, 1, 1, tzinfo=UTC)
    assert next_fire("cron(0 0 1 1 ? 2020-2025)", None, T0, T0) is None


def test_cron_across_a_dst_change():
    # Paris leaves summer time on 2026-10-25: 09:00 local is 07:00 UTC before, 08:00 UTC after.
    before = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    assert next_fire("cron(0 9 * * ? *)", "Europe/Paris", before, before) == datetime(2026, 10, 25, 8, 0, tzinfo=UTC)
    assert next_fire("cron(0 9 * * ? *)", "Europe/Paris", before - timedelta(days=1), before) == datetime(2026, 10, 24, 7, 0, tzinfo=UTC)


def test_at_fires_once_in_its_time_zone():
    assert next_fire("at(2026-12-03T09:00:00)", "Europe/Paris", T0, T0) == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    assert next_fire("at(2026-12-03T09:00:00)", "Europe/Paris", datetime(2026, 12, 3, 8, 0, tzinfo=UTC), T0) is None


# --- the loop against moto's Scheduler, with an injected clock ----------------------------------
class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_the_loop_fires_enabled_schedules_and_forgets_disabled_and_deleted_ones(aws):
    client = boto3.client("scheduler")
    group = "conduit-local-agents"
    target = {"Arn": "arn:aws:lambda:us-east-1:123456789012:function:RunStepsFunction", "RoleArn": "arn:aws:iam::123456789012:role/r"}

    def create(name, expression, state="ENABLED"):
        client.create_schedule(
            Name=name, GroupName=group, ScheduleExpression=expression, State=state,
            FlexibleTimeWindow={"Mode": "OFF"}, Target={**target, "Input": json.dumps({"agentId": name})},
        )

    create("every-minute", "rate(1 minute)")
    create("disabled", "rate(1 minute)", state="DISABLED")
    create("far", "cron(0 0 1 1 ? 2099)")
    created = datetime.fromtimestamp(client.get_schedule(Name="every-minute", GroupName=group)["CreationDate"].timestamp(), UTC)
    invoked: list[tuple[str, str]] = []
    clock = Clock(created + timedelta(seconds=1))
    scheduler = Scheduler(lambda: client, lambda arn, payload: invoked.append((arn, payload)), clock=clock)

    assert scheduler.tick() == ["every-minute"]  # at creation
    assert invoked == [(target["Arn"], json.dumps({"agentId": "every-minute"}))]
    clock.now += timedelta(seconds=30)
    assert scheduler.tick() == []
    clock.now += timedelta(seconds=30)
    assert scheduler.tick() == ["every-minute"]  # one minute after creation
    assert scheduler.tick() == []  # once per due time

    client.update_schedule(Name="every-minute", GroupName=group, ScheduleExpression="rate(1 minute)", State="DISABLED",
                           FlexibleTimeWindow={"Mode": "OFF"}, Target=target)
    clock.now += timedelta(minutes=5)
    assert scheduler.tick() == []
    client.delete_schedule(Name="every-minute", GroupName=group)
    assert scheduler.tick() == []
    assert len(invoked) == 2


# --- through the local stack -------------------------------------------------------------------
@pytest.mark.stack
def test_a_rate_one_minute_agent_runs_twice_in_a_little_over_a_minute(client, admin):
    """~70 s of waiting on the clock; under `-n 2` other tests run meanwhile."""
    from tests.test_agents import create_agent, get, new_user

    user = new_user(client, admin, "pro")
    agent = create_agent(client, user, triggerType="scheduled", schedule="rate(1 minute)")
    deadline = time.monotonic() + 150  # generous: a bound, not a timing assertion
    while True:
        runs = get(client, user, f"/agents/{agent['id']}/runs")["items"]
        finished = [run for run in runs if run["status"] == "succeeded"]
        if len(finished) >= 2:
            break
        assert time.monotonic() < deadline, f"the schedule fired {len(runs)} time(s): {runs}"
        time.sleep(2)
    assert {run["trigger"] for run in runs} == {"scheduled"}
    # Deleting the agent deletes its schedule: nothing fires any more.
    assert client.delete(f"/agents/{agent['id']}", headers=user["headers"]).status_code == 204
