"""Cron expressions of schedules (``Upstash-Cron``): validation and the next tick.

QStash's rules (qstash-api.md §3.5): five standard fields (minute hour day-of-month month
day-of-week) evaluated in UTC, an optional ``CRON_TZ=<IANA zone> `` prefix naming the zone, and
surrounding whitespace trimmed (the trimmed form is what is stored and shown).

kafstash extension: six fields whose FIRST field is seconds (``*/2 * * * * *`` = every two
seconds). QStash's resolution is one minute; seconds let tests and demos see ticks in seconds.
Everything else (``@daily``, seven fields, hashed ``H`` fields, an unknown zone) is refused with
a :class:`InvalidCron` whose message the API returns as a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

_TZ_PREFIX = "CRON_TZ="
_STANDARD_FIELDS = 5
_WITH_SECONDS = 6


class InvalidCron(ValueError):
    """The expression is not a cron kafstash can run; the message says why."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A validated expression: ``text`` as stored, ``fields`` without the zone prefix."""

    text: str
    fields: str
    zone: tzinfo
    seconds: bool


def parse(raw: str) -> Cron:
    text = raw.strip()
    if not text:
        raise InvalidCron("invalid cron: empty expression")
    zone: tzinfo = UTC
    fields = text
    if text.startswith(_TZ_PREFIX):
        name, _, fields = text[len(_TZ_PREFIX) :].partition(" ")
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidCron(f"invalid cron: unknown time zone {name!r}") from None
        fields = fields.strip()
    parts = fields.split()
    if len(parts) not in (_STANDARD_FIELDS, _WITH_SECONDS):
        raise InvalidCron(
            f"invalid cron {text!r}: expected 5 fields (minute hour day month weekday), "
            "or 6 with seconds first"
        )
    fields = " ".join(parts)
    cron = Cron(text=text, fields=fields, zone=zone, seconds=len(parts) == _WITH_SECONDS)
    try:
        _iter(cron, 0)
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise InvalidCron(f"invalid cron {text!r}: {exc}") from None
    return cron


def _iter(cron: Cron, after_ms: int) -> croniter:
    start = datetime.fromtimestamp(after_ms / 1000, tz=cron.zone)
    return croniter(
        cron.fields,
        start,
        second_at_beginning=True if cron.seconds else None,
        ret_type=datetime,
    )


def next_tick(raw: str, after_ms: int) -> int:
    """The first tick strictly after ``after_ms`` (Unix ms), in Unix ms."""
    nxt = _iter(parse(raw), after_ms).get_next(datetime)
    assert isinstance(nxt, datetime)
    return int(nxt.timestamp() * 1000)
