"""The latest value per key of a compacted topic, and read-your-writes over it.

:class:`CompactedView` follows its topic from the beginning at every start and answers only
once it has caught up. ``decode(key, value)`` turns a record into the view's value, or ``None``
to ignore it (one topic may carry several kinds, told apart by key prefix).

Read-your-writes, one way for every view: ``put``/``drop`` show this process's write at once.
The next record for the key replaces it, which is right when this process wrote that record
itself. When another process derives the records from our write (the stream worker's states of
schedules and gates, written after it applied our command), a record of the state *before* our
write may still be on its way; such a view is given ``version`` (what a value's writer stamped
it with: a spec's ``updated_at``, a gate's ``admin_at``), and a write sets a floor for its key:

- after ``put(key, value)`` records below ``version(value)``, and tombstones, are ignored;
- after ``drop(key, at)`` records at or below ``at`` are ignored, and a tombstone is our delete;

until a record passes the floor, which removes it: from then on the topic is the truth again (the
writer stamps one key's records in order). A floor only ever rises, so a later write stamped
lower (a publish showing a queue it created) does not re-admit what an earlier write ruled out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Self, TypeVar

from kafstash.views.follower import TopicFollower

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Floor:
    version: int
    deleted: bool  # the write was a delete: its tombstone is expected, not a stale one


class CompactedView(Generic[T]):
    """Latest value per key of a compacted topic; an async context manager that is entered once
    the topic has been read to the end offsets seen at start."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        decode: Callable[[str, bytes], T | None],
        *,
        version: Callable[[T], int] | None = None,
    ) -> None:
        self._decode = decode
        self._version = version
        self._values: dict[str, T] = {}
        self._floors: dict[str, _Floor] = {}
        self._follower = TopicFollower(bootstrap, topic, self.apply, from_beginning=True)
        # Set once the first read reached the end: a view that is not ready may miss keys.
        self.ready = self._follower.caught_up

    async def __aenter__(self) -> Self:
        await self._follower.__aenter__()
        try:
            await self.ready.wait()
        except BaseException:
            await self._follower.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._follower.__aexit__(et, e, tb)

    def get(self, key: str) -> T | None:
        return self._values.get(key)

    async def sync(self, timeout_s: float) -> bool:
        """Wait until the view holds every record appended before this call (another process's
        write that this one must see); False when ``timeout_s`` passed first."""
        return await self._follower.sync(timeout_s)

    def count(self) -> int:
        """How many keys hold a value. Not ``__len__``: an empty view must stay truthy. A metrics
        scrape calls this from its own thread, which ``len`` of a dict allows."""
        return len(self._values)

    def scan(self, prefix: str) -> list[tuple[str, T]]:
        """Every (key, value) whose key starts with ``prefix``, in key order."""
        return sorted(((k, v) for k, v in self._values.items() if k.startswith(prefix)), key=_first)

    def put(self, key: str, value: T) -> None:
        """Show this process's write of ``value`` at once."""
        if self._version is not None:
            self._raise_floor(key, self._version(value), deleted=False)
        self._values[key] = value

    def drop(self, key: str, at: int | None = None) -> None:
        """Show this process's delete at once; a versioned view needs the delete's ``at``."""
        if self._version is not None:
            if at is None:
                raise ValueError("a versioned view's drop needs the version of the delete")
            self._raise_floor(key, at, deleted=True)
        self._values.pop(key, None)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic (the follower calls this; tests feed records with it)."""
        if key is None:
            return
        k = key.decode()
        if value is None:
            floor = self._floors.get(k)
            if floor is not None:
                if not floor.deleted:
                    return  # the tombstone of a delete that came before our put
                del self._floors[k]  # our own delete came through
            self._values.pop(k, None)
            return
        decoded = self._decode(k, value)
        if decoded is None:
            return
        if self._version is not None and (floor := self._floors.get(k)) is not None:
            v = self._version(decoded)
            if v < floor.version or (floor.deleted and v == floor.version):
                return  # written before our write: still on its way when we answered
            del self._floors[k]  # the topic caught up with our write
        self._values[k] = decoded

    def _raise_floor(self, key: str, version: int, *, deleted: bool) -> None:
        floor = self._floors.get(key)
        self._floors[key] = _Floor(max(version, floor.version) if floor else version, deleted)


def _first(item: tuple[str, object]) -> str:
    return item[0]
