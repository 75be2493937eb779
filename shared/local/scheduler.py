"""EventBridge Scheduler's clock for the local stack.

moto stores schedules (agents.py creates, updates and deletes them) but never fires
them. This loop reads the emulated schedules and, when one is due, invokes its Lambda
target asynchronously with its `Input`, as Scheduler does:

- `rate(n unit)`: first at creation (no StartDate: Scheduler "starts invoking
  immediately"), then every n units;
- `cron(min hour dom month dow year)`: AWS's six fields, evaluated in the schedule's
  IANA time zone (DST included) with croniter, a maintained cron library. AWS's
  day-of-week is 1-7 = SUN-SAT (croniter's is 0-6), `?` means "any", `nL` is the last
  n-day of the month (croniter `Ln`); `L`, `15W` and `n#k` pass through. Not supported:
  `LW` (last weekday of the month), which is then never due;
- `at(yyyy-mm-ddThh:mm:ss)`: once, in the schedule's time zone.

Only ENABLED schedules fire (an inactive agent's schedule is DISABLED); a deleted one
is gone from the listing. `next_fire` is pure, so its rules are tested with any clock.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

logger = logging.getLogger("conduit.local.scheduler")

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def _aws_weekday(token: str) -> str:
    """One day-of-week token of AWS (1-7 = SUN-SAT) in croniter's numbering (0-6)."""
    last = re.fullmatch(r"(\d)L", token)
    if last:
        return f"L{int(last.group(1)) - 1}"
    nth = re.fullmatch(r"(\d)#(\d)", token)
    if nth:
        return f"{int(nth.group(1)) - 1}#{nth.group(2)}"
    return re.sub(r"\d+", lambda digit: str(int(digit.group()) - 1), token)


def to_croniter(fields: str) -> tuple[str, str]:
    """AWS's six cron fields → (croniter's five fields, the year field)."""
    minute, hour, dom, month, dow, year = fields.split()
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else ",".join(_aws_weekday(token) for token in dow.split(","))
    return f"{minute} {hour} {dom} {month} {dow}", year


def _year_matches(year_field: str, year: int) -> bool:
    for part in year_field.split(","):
        base, _, step = part.partition("/")
        if base in ("*", "?"):
            low, high = 1970, 2199
        elif "-" in base:
            low, high = (int(value) for value in base.split("-"))
        else:
            low = int(base)
            high = 2199 if step else low
        if low <= year <= high and (year - low) % int(step or 1) == 0:
            return True
    return False


def next_fire(expression: str, timezone: str | None, after: datetime, created: datetime) -> datetime | None:
    """The first time strictly after `after` (aware) the schedule is due, or None if never again."""
    zone = ZoneInfo(timezone or "UTC")
    rate = _RATE.match(expression)
    if rate:
        interval = int(rate.group(1)) * _UNIT_SECONDS[rate.group(2).rstrip("s")]
        if after < created:
            return created
        periods = int((after - created).total_seconds() // interval) + 1
        return created + timedelta(seconds=periods * interval)
    at = _AT.match(expression)
    if at:
        when = datetime.fromisoformat(at.group(1)).replace(tzinfo=zone)
        return when if when > after else None
    cron = _CRON.match(expression)
    if cron:
        fields, year_field = to_croniter(cron.group(1))
        try:
            times = croniter(fields, after.astimezone(zone))
        except (ValueError, KeyError) as error:  # croniter's errors subclass ValueError
            logger.warning("schedule expression %s is not supported locally: %s", expression, error)
            return None
        for _ in range(5000):  # bounded: a year field far away ends the search
            candidate = times.get_next(datetime)
            if _year_matches(year_field, candidate.year):
                return candidate.astimezone(UTC)
            if candidate.year > 2199:
                break
        return None
    return None


class Scheduler:
    """Polls the emulator's schedules every `interval` seconds and invokes the due ones."""

    def __init__(
        self,
        scheduler_client: Callable[[], Any],
        invoke: Callable[[str, str], None],
        interval: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = scheduler_client
        self._invoke = invoke  # (function name or ARN, input) → asynchronous invoke
        self._interval = interval
        self._clock = clock
        self._due: dict[str, tuple[Any, datetime | None]] = {}  # ARN → (version, next fire)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.tick()
            except Exception as error:  # the emulator going away at shutdown, mostly
                if not self._stop.is_set():
                    logger.warning("scheduler tick failed: %s", error)

    def _schedules(self) -> list[dict[str, Any]]:
        client = self._client()
        summaries: list[dict[str, Any]] = []
        for page in client.get_paginator("list_schedules").paginate(State="ENABLED"):
            summaries.extend(page.get("Schedules", []))
        return [client.get_schedule(Name=item["Name"], GroupName=item["GroupName"]) for item in summaries]

    def tick(self) -> list[str]:
        """One pass: invoke each due schedule once; returns the names invoked."""
        now = self._clock()
        fired: list[str] = []
        seen: set[str] = set()
        for schedule in self._schedules():
            if schedule.get("State") != "ENABLED":
                continue
            arn = schedule["Arn"]
            seen.add(arn)
            version = (schedule["ScheduleExpression"], schedule.get("ScheduleExpressionTimezone"), schedule.get("LastModificationDate"))
            created = _as_datetime(schedule.get("StartDate") or schedule.get("CreationDate")) or now
            known = self._due.get(arn)
            if known is None or known[0] != version:
                # New or changed: from its start for a new one, from now for a change.
                after = created - timedelta(microseconds=1) if known is None else now
                known = (version, next_fire(schedule["ScheduleExpression"], schedule.get("ScheduleExpressionTimezone"), after, created))
            due = known[1]
            if due is not None and due <= now:
                target = schedule["Target"]
                self._invoke(target["Arn"], target.get("Input") or json.dumps({}))
                fired.append(schedule["Name"])
                known = (version, next_fire(schedule["ScheduleExpression"], schedule.get("ScheduleExpressionTimezone"), max(due, now), created))
            self._due[arn] = known
        for arn in set(self._due) - seen:  # deleted or disabled: forgotten (re-enabling counts from then)
            del self._due[arn]
        return fired


def _as_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)
