"""Schedules: the definition users write, the timer command that fires it, and its read model.

- :class:`ScheduleSpec` is the value of the compacted topic ``<prefix>.schedules`` keyed
  ``<user>/<schedule id>`` (:func:`schedule_key`); a tombstone deletes the schedule.
- :class:`Tick` travels on ``<prefix>.timers`` keyed by the same schedule key, so it lands on
  the partition (and stream worker) that holds the spec's row in the cron table.
- :class:`ScheduleState` is both the cron table's row and the read model the stream worker
  publishes to the compacted ``<prefix>.state`` topic keyed ``schedule/<user>/<id>``.
"""

from __future__ import annotations

import re

from msgspec import Struct

from kafstash.schemas import ids
from kafstash.schemas.message import Message

SCHEDULE_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
STATE_KIND = "schedule"


def schedule_key(user_id: str, schedule_id: str) -> str:
    return f"{user_id}/{schedule_id}"


def state_key(user_id: str, schedule_id: str) -> str:
    return f"{STATE_KIND}/{user_id}/{schedule_id}"


class ScheduleSpec(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """One schedule as its owner defined it (``POST /v2/schedules/{destination}``).

    ``template`` is the message every firing copies (method, forwarded headers, body, retries,
    callbacks, labels, ...): its id, url and times are replaced at each tick. ``targets`` are
    the URLs a firing publishes to: ``[destination]`` for a URL. ``url_group`` is set (to
    ``destination``, the group's name) when the schedule targets a URL group: its endpoints are
    resolved at every tick, not at create time, so an endpoint added or removed later counts.
    ``updated_at`` orders the writes of one schedule, so a read view can ignore a state
    computed from an older spec.
    """

    schedule_id: str
    user_id: str
    cron: str
    destination: str
    created_at: int
    updated_at: int
    template: Message
    targets: list[str] = []
    paused: bool = False
    delay_ms: int = 0
    queue_name: str | None = None
    caller_ip: str | None = None
    url_group: str | None = None

    @property
    def key(self) -> str:
        return schedule_key(self.user_id, self.schedule_id)


class Tick(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="tick"):
    """The timer found ``schedule_key``'s tick ``due`` (ms) reached; its owner decides."""

    schedule_key: str
    due: int


class ScheduleState(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """The cron table's row and the published read model of one schedule.

    ``next_schedule_time`` is None only when the cron cannot produce a next time (``error``
    says why). ``last_message_ids`` are the messages published by the last firing.
    """

    spec: ScheduleSpec
    next_schedule_time: int | None = None
    last_schedule_time: int | None = None
    last_message_ids: list[str] = []
    error: str | None = None


def tick_message_id(user_id: str, schedule_id: str, tick_ms: int, target: int, url: str) -> str:
    """The id of the message a firing publishes to one target: the same for a replayed tick.

    Derived from (user, schedule, tick, target), so a tick fired twice (a replay after a crash,
    or two workers during a rebalance) publishes the same ids and the dedup step drops the copy.
    """
    return ids.derived_message_id("schedule", user_id, schedule_id, str(tick_ms), str(target), url)


def tick_dedup_key(user_id: str, schedule_id: str, tick_ms: int, target: int) -> str:
    # ``:schedule:`` never meets the API's ``<user>:id:`` / ``<user>:content:`` dedup keys.
    return f"{user_id}:schedule:{schedule_id}:{tick_ms}:{target}"


def group_tick_message_id(user_id: str, schedule_id: str, tick_ms: int, url: str) -> str:
    """The id of the message a group firing publishes to the endpoint ``url``.

    Keyed by the endpoint's url, not its position: an endpoint removed between a tick and its
    replay must not shift the others onto different ids (which dedup could not recognise).
    """
    return ids.derived_message_id("schedule-group", user_id, schedule_id, str(tick_ms), url)


def group_tick_dedup_key(user_id: str, schedule_id: str, tick_ms: int, message_id: str) -> str:
    # The message id already stands for the url; a url itself would make an unbounded key.
    return f"{user_id}:schedule:{schedule_id}:{tick_ms}:{message_id}"
