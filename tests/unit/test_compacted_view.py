"""kafstash.views.compacted without a broker: records fed through ``apply``, and the one
read-your-writes floor every view with derived records uses (schedules, gate states)."""

from __future__ import annotations

import msgspec
import pytest

from kafstash.views.compacted import CompactedView


class Item(msgspec.Struct, frozen=True):
    at: int
    note: str = ""


def _decode(key: str, value: bytes) -> Item | None:
    if not key.startswith("item/"):
        return None  # another kind on the same topic
    return msgspec.json.decode(value, type=Item)


def view(*, versioned: bool) -> CompactedView[Item]:
    # Never entered: nothing connects to this address.
    return CompactedView("127.0.0.1:1", "t.state", _decode, version=_at if versioned else None)


def _at(item: Item) -> int:
    return item.at


def feed(v: CompactedView[Item], key: str, item: Item | None) -> Item | None:
    v.apply(key.encode(), None if item is None else msgspec.json.encode(item))
    return v.get(key)


def test_latest_record_per_key_and_tombstones() -> None:
    v = view(versioned=False)
    assert feed(v, "item/a", Item(at=1)) == Item(at=1)
    assert feed(v, "item/a", Item(at=2)) == Item(at=2)
    feed(v, "item/b", Item(at=1))
    feed(v, "other/c", Item(at=1))  # decoded as None: ignored
    v.apply(None, b"{}")  # a record without a key is no state of any key
    assert v.get("other/c") is None
    assert v.scan("item/") == [("item/a", Item(at=2)), ("item/b", Item(at=1))]
    assert feed(v, "item/a", None) is None
    assert v.scan("item/") == [("item/b", Item(at=1))]


def test_without_version_the_next_record_replaces_a_local_write() -> None:
    v = view(versioned=False)
    v.put("item/a", Item(at=5, note="ours"))
    assert v.get("item/a") == Item(at=5, note="ours")
    assert feed(v, "item/a", Item(at=1)) == Item(at=1)  # we wrote this topic: it is the truth
    v.drop("item/a")
    assert v.get("item/a") is None


def test_put_floor_ignores_older_records_and_tombstones_until_ours_arrives() -> None:
    v = view(versioned=True)
    feed(v, "item/a", Item(at=1))
    ours = Item(at=10, note="ours")
    v.put("item/a", ours)
    assert feed(v, "item/a", Item(at=9)) == ours  # still on its way when we answered
    assert feed(v, "item/a", None) == ours  # the tombstone of a delete before our put
    derived = Item(at=10, note="derived")
    assert feed(v, "item/a", derived) == derived  # the writer applied our write
    # The floor is gone: the topic is the truth again, even for a lower stamp.
    assert feed(v, "item/a", Item(at=3)) == Item(at=3)
    assert feed(v, "item/a", None) is None


def test_drop_floor_ignores_records_at_or_below_it_and_takes_a_tombstone_as_ours() -> None:
    v = view(versioned=True)
    feed(v, "item/a", Item(at=1))
    v.drop("item/a", 20)
    assert v.get("item/a") is None
    assert feed(v, "item/a", Item(at=20)) is None  # written at the same ms as our delete
    assert feed(v, "item/a", Item(at=5)) is None
    assert feed(v, "item/a", None) is None  # our delete came through: floor gone
    assert feed(v, "item/a", Item(at=2)) == Item(at=2)


def test_a_newer_record_after_a_drop_is_a_new_write() -> None:
    v = view(versioned=True)
    v.drop("item/a", 20)
    assert feed(v, "item/a", Item(at=21)) == Item(at=21)  # created again elsewhere


def test_a_floor_only_rises() -> None:
    v = view(versioned=True)
    v.drop("item/a", 20)
    shown = Item(at=0, note="shown by a publish")
    v.put("item/a", shown)  # stamped lower than the delete
    assert feed(v, "item/a", Item(at=15)) == shown  # still below the delete: ignored
    assert feed(v, "item/a", Item(at=20)) == Item(at=20)


def test_floors_are_per_key() -> None:
    v = view(versioned=True)
    v.put("item/a", Item(at=10))
    assert feed(v, "item/b", Item(at=1)) == Item(at=1)


def test_a_versioned_drop_needs_its_version() -> None:
    v = view(versioned=True)
    with pytest.raises(ValueError, match="version"):
        v.drop("item/a")
