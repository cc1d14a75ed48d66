"""The query filters shared by ``GET /v2/events`` (and ``/v2/logs``) and ``DELETE /v2/messages``.

QStash's rule (qstash-api.md §3.4, §3.9): the values of one filter are OR-ed, different filters
are AND-ed. A value may be repeated (``label=a&label=b``, what the SDKs send) or comma-separated
(``label=a,b``, what the OpenAPI document allows); both mean the same.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from kafstash.producers.api.errors import ApiError
from kafstash.schemas.message import Message


class MultiParams(Protocol):
    """What the filters read from a query string (Starlette's ``QueryParams`` is one)."""

    def getlist(self, key: str) -> list[str]: ...

    def multi_items(self) -> list[tuple[str, str]]: ...


# A URL may hold commas itself (``?ids=1,2``): a comma list of URLs splits before a scheme only.
_URL_SPLIT = re.compile(r",\s*(?=https?://)", re.IGNORECASE)

# query key → MessageFilter field; ``callerIP`` is the deprecated spelling the docs still show.
_SET_FILTERS = {
    "url": "urls",
    "topicName": "topic_names",
    "queueName": "queue_names",
    "scheduleId": "schedule_ids",
    "label": "labels",
    "host": "hosts",
    "path": "paths",
    "callerIp": "caller_ips",
    "callerIP": "caller_ips",
    "flowControlKey": "flow_control_keys",
}

# The states a ``state`` filter may name. IN_PROGRESS is filter-only; both spellings of the
# cancelled state are accepted, kafstash emits CANCELED (the one the Python SDK can parse).
STATE_ALIASES: dict[str, frozenset[str]] = {
    "CREATED": frozenset({"CREATED"}),
    "ACTIVE": frozenset({"ACTIVE"}),
    "RETRY": frozenset({"RETRY"}),
    "ERROR": frozenset({"ERROR"}),
    "DELIVERED": frozenset({"DELIVERED"}),
    "FAILED": frozenset({"FAILED"}),
    "CANCEL_REQUESTED": frozenset({"CANCEL_REQUESTED"}),
    "CANCELED": frozenset({"CANCELED"}),
    "CANCELLED": frozenset({"CANCELED"}),
    "IN_PROGRESS": frozenset({"ACTIVE", "RETRY", "ERROR"}),
}


def values(params: MultiParams, key: str) -> list[str]:
    """Every value of ``key``, repeated keys and comma lists flattened, blanks dropped."""
    out: list[str] = []
    for raw in params.getlist(key):
        parts = _URL_SPLIT.split(raw) if key == "url" else raw.split(",")
        out.extend(p.strip() for p in parts if p.strip())
    return out


def _millis(params: MultiParams, key: str) -> int | None:
    raw = values(params, key)
    if not raw:
        return None
    try:
        return int(raw[0])
    except ValueError:
        raise ApiError(f"invalid {key}: {raw[0]!r} is not a Unix time in milliseconds") from None


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """One query's filters; an empty set (or None) means "no condition"."""

    message_ids: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()
    urls: frozenset[str] = frozenset()
    topic_names: frozenset[str] = frozenset()
    queue_names: frozenset[str] = frozenset()
    schedule_ids: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()
    caller_ips: frozenset[str] = frozenset()
    flow_control_keys: frozenset[str] = frozenset()
    from_ms: int | None = None
    to_ms: int | None = None

    @property
    def is_empty(self) -> bool:
        return self == MessageFilter()

    def matches(
        self, *, message_id: str, url: str, message: Message | None, at_ms: int, state: str = ""
    ) -> bool:
        """Does one event (or pending message) pass? ``at_ms`` is what fromDate/toDate bound.

        Filters on message details need the message; without it (its CREATED event is older than
        what the view keeps) they do not match.
        """
        plain = (
            not self.message_ids or message_id in self.message_ids,
            not self.states or state in self.states,
            self.from_ms is None or at_ms >= self.from_ms,
            self.to_ms is None or at_ms <= self.to_ms,
            not self.urls or url in self.urls,
        )
        return all(plain) and self._matches_address(url) and self._matches_details(message)

    def _matches_address(self, url: str) -> bool:
        if not self.hosts and not self.paths:
            return True
        parts = urlsplit(url)
        if self.hosts and not {parts.hostname, parts.netloc} & self.hosts:
            return False
        return not self.paths or (parts.path or "/") in self.paths

    def _matches_details(self, m: Message | None) -> bool:
        checks: list[tuple[frozenset[str], set[str | None]]] = [
            (self.topic_names, {m.topic_name} if m else set()),
            (self.queue_names, {m.queue_name} if m else set()),
            (self.schedule_ids, {m.schedule_id} if m else set()),
            (self.caller_ips, {m.caller_ip} if m else set()),
            (self.labels, set(m.labels) if m else set()),
            (
                self.flow_control_keys,
                {m.flow_control.key} if m and m.flow_control else set(),
            ),
        ]
        return all(not wanted or wanted & have for wanted, have in checks)


def parse_filter(params: MultiParams, *, with_states: bool = True) -> MessageFilter:
    """The filters of a query string; 400 for a malformed date or an unknown state."""
    fields: dict[str, object] = {}
    for key, name in _SET_FILTERS.items():
        got = values(params, key)
        if got:
            current = fields.get(name, frozenset())
            assert isinstance(current, frozenset)
            fields[name] = current | frozenset(got)
    ids = values(params, "messageId") + values(params, "messageIds")
    if ids:
        fields["message_ids"] = frozenset(ids)
    if with_states:
        states: set[str] = set()
        for raw in values(params, "state"):
            alias = STATE_ALIASES.get(raw.upper())
            if alias is None:
                raise ApiError(f"invalid state: {raw!r}")
            states |= alias
        if states:
            fields["states"] = frozenset(states)
    fields["from_ms"] = _millis(params, "fromDate")
    fields["to_ms"] = _millis(params, "toDate")
    return dataclasses.replace(MessageFilter(), **fields)  # type: ignore[arg-type]
