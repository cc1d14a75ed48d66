"""The Kafka offsets an Iceberg snapshot covers, kept in the snapshot's summary properties.

Pure: summaries in, summaries out. Property ``kafstash.offsets.<topic>`` holds a JSON object
``{"<partition>": next_offset}`` for every partition any archiver has committed. Each commit
writes the *full* map: its own partitions' new positions merged over the parent snapshot's map,
so the current snapshot alone always says where every partition resumes.

Several archivers own different partitions and commit concurrently. An archiver only moves its
own partitions, and only from the position it started its batch at: if the parent snapshot shows
another position for one of them, someone else (a previous owner, a zombie) committed that range
and the batch is rejected with :class:`OffsetsMoved` instead of writing the range twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, KeysView, Mapping

from pyiceberg.exceptions import ValidationException

from kafstash.schemas.delivery_log import offsets_property

Offsets = dict[int, int]  # partition → next offset to read


class OffsetsMoved(ValidationException):
    """The parent snapshot moved one of our partitions: our buffered range is stale.

    A ValidationException, so pyiceberg deletes the files it wrote for the refused commit.
    """

    def __init__(self, moved: Mapping[int, tuple[int | None, int | None]]) -> None:
        self.moved = dict(moved)
        detail = ", ".join(f"p{p}: expected {e}, found {f}" for p, (e, f) in sorted(moved.items()))
        super().__init__(f"offsets moved under us ({detail})")


def read_offsets(summary: Mapping[str, str] | None, topic: str) -> Offsets | None:
    """The offsets map in one snapshot summary, or None if the snapshot carries none."""
    if summary is None:
        return None
    raw = summary.get(offsets_property(topic))
    if raw is None:
        return None
    return {int(p): int(o) for p, o in json.loads(raw).items()}


def latest_offsets(summaries: Iterable[Mapping[str, str]], topic: str) -> Offsets:
    """The map of the newest snapshot that has one; ``summaries`` go newest first.

    Snapshots written by other engines (or by hand) may lack the property; their ancestors' map
    still describes what the archiver wrote.
    """
    for summary in summaries:
        found = read_offsets(summary, topic)
        if found is not None:
            return found
    return {}


def encode(offsets: Mapping[int, int]) -> str:
    return json.dumps({str(p): o for p, o in sorted(offsets.items())}, separators=(",", ":"))


def merge(
    previous: Mapping[int, int], *, start: Mapping[int, int | None], end: Mapping[int, int]
) -> Offsets:
    """``previous`` with our partitions moved from ``start`` to ``end``; raises OffsetsMoved.

    ``start[p]`` is the position our batch for p began at (None: p was never committed).
    """
    moved = {p: (s, previous.get(p)) for p, s in start.items() if previous.get(p) != s}
    if moved:
        raise OffsetsMoved(moved)
    merged = dict(previous)
    merged.update(end)
    return merged


class CommitProperties(Mapping[str, str]):
    """Snapshot properties computed when the snapshot is built, not when the append is called.

    pyiceberg unpacks ``snapshot_properties`` (``**props``: ``keys()``, then one lookup per key)
    each time it builds a snapshot summary, and it rebuilds the summary on every retry after a
    concurrent commit, against the refreshed parent. This mapping re-reads the parent's offsets
    at ``keys()`` (through ``history``, newest snapshot first) and re-merges ours over them, so a
    retried commit never erases another archiver's positions, and a moved range is refused.
    """

    def __init__(
        self,
        *,
        topic: str,
        history: Callable[[], Iterable[Mapping[str, str]]],
        start: Mapping[int, int | None] | None = None,
        end: Mapping[int, int] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self._topic = topic
        self._history = history
        self._start = dict(start or {})
        self._end = dict(end or {})
        self._extra = dict(extra or {})
        self._built: dict[str, str] | None = None

    def build(self) -> dict[str, str]:
        """The properties against the current parent (raises OffsetsMoved); cached for lookups."""
        previous = latest_offsets(self._history(), self._topic)
        merged = merge(previous, start=self._start, end=self._end)
        self._built = {**self._extra, offsets_property(self._topic): encode(merged)}
        return self._built

    def keys(self) -> KeysView[str]:
        return self.build().keys()

    def __getitem__(self, key: str) -> str:
        built = self._built if self._built is not None else self.build()
        return built[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.build())

    def __len__(self) -> int:
        return len(self._built if self._built is not None else self.build())
