"""URL groups (QStash "topics"): a name that fans a publish out to several endpoints.

The API is the single writer: it stores the whole group in the compacted ``<prefix>.state`` topic
under :func:`group_key` and tombstones it on delete. The functions here are the pure upsert and
removal rules (qstash-api.md §3.7), so they can be tested without a broker.
"""

from __future__ import annotations

import re

import msgspec
from msgspec import Struct

from kafstash.schemas import codec

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
GROUP_KEY_PREFIX = "group/"


class Endpoint(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """One destination of a group; ``name`` is optional and unique within the group."""

    url: str
    name: str | None = None


class UrlGroup(
    Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
    tag_field="type",
    tag="url-group.v1",
    omit_defaults=True,
):
    """A URL group as stored. Times are Unix milliseconds."""

    name: str
    user_id: str
    endpoints: list[Endpoint]
    created_at: int
    updated_at: int


def valid_name(name: str) -> bool:
    """QStash's rule for group (and queue) names: ``[A-Za-z0-9._-]`` only."""
    return bool(_NAME.match(name))


def decode_group(key: str, value: bytes) -> UrlGroup | None:
    """A record of the ``state`` topic as a group; None for the other kinds sharing the topic
    (schedules, queues) and for a record that does not read as a group."""
    if not key.startswith(GROUP_KEY_PREFIX):
        return None
    try:
        return codec.decode(value, UrlGroup)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def group_key(user_id: str, name: str) -> str:
    return f"{GROUP_KEY_PREFIX}{user_id}/{name}"


class RemoveSpec(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Which endpoints to remove: every given field must match (none given matches nothing)."""

    url: str | None = None
    name: str | None = None

    def matches(self, endpoint: Endpoint) -> bool:
        if self.url is None and self.name is None:
            return False
        return (self.url is None or self.url == endpoint.url) and (
            self.name is None or self.name == endpoint.name
        )


def _replaces(new: Endpoint, old: Endpoint) -> bool:
    if new.name is not None:
        # A name identifies an endpoint; an unnamed endpoint with the same url gets the name.
        return old.name == new.name or (old.name is None and old.url == new.url)
    return old.url == new.url


def upsert(
    group: UrlGroup | None, *, user_id: str, name: str, endpoints: list[Endpoint], now_ms: int
) -> UrlGroup:
    """The group after adding ``endpoints``: created when missing, each endpoint upserted.

    A named endpoint replaces the one with that name (its url may change); an unnamed one is a
    no-op when an endpoint with that url already exists.
    """
    current = list(group.endpoints) if group is not None else []
    for new in endpoints:
        for i, old in enumerate(current):
            if _replaces(new, old):
                if new.name is not None:
                    current[i] = new
                break
        else:
            current.append(new)
    return UrlGroup(
        name=name,
        user_id=user_id,
        endpoints=current,
        created_at=group.created_at if group is not None else now_ms,
        updated_at=now_ms,
    )


def remove(group: UrlGroup, *, specs: list[RemoveSpec], now_ms: int) -> UrlGroup | None:
    """The group without the endpoints matching any spec; ``None`` once the last one is gone."""
    kept = [e for e in group.endpoints if not any(s.matches(e) for s in specs)]
    if not kept:
        return None
    return UrlGroup(
        name=group.name,
        user_id=group.user_id,
        endpoints=kept,
        created_at=group.created_at,
        updated_at=now_ms,
    )
