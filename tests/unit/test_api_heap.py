"""The API's long-lived memory stays out of the garbage collector's full collections.

A pending message held as a decoded ``Message`` was six GC-tracked objects; with every pending
message in the view, generation-2 collections stalled the event loop 100 ms and more (the
publish tail of #10). These pin the fix: the view keeps untracked bytes, and ``settle`` freezes
what was loaded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator

import msgspec
import pytest

from kafstash.producers.api import collector
from kafstash.producers.kafka_log import MessagesView
from kafstash.schemas import codec
from kafstash.schemas.message import Message


def _message(mid: str, user: str = "u1") -> Message:
    return Message(
        message_id=mid,
        user_id=user,
        url="https://example.com/hook",
        created_at=1,
        not_before=1,
        header={"Content-Type": ["text/plain"]},
        body=b"hello",
        labels=["a"],
    )


def test_pending_messages_are_not_tracked_by_the_collector() -> None:
    view = MessagesView("127.0.0.1:1", "t.messages")  # never entered: no broker needed
    for i in range(100):
        view.remember(_message(f"msg_{i}"))
    view._on_record(b"msg_x", codec.encode(_message("msg_x", user="u2")))
    gc.collect()  # untracks tuples of atomic values, as any collection does
    entries = list(view._messages.values())
    assert len(entries) == 101
    assert not any(gc.is_tracked(entry) or gc.is_tracked(entry[1]) for entry in entries)


def test_the_view_answers_the_messages_it_keeps_as_bytes() -> None:
    view = MessagesView("127.0.0.1:1", "t.messages")
    view.remember(_message("msg_1"))
    view._on_record(b"msg_2", codec.encode(_message("msg_2", user="u2")))
    assert view.get("msg_1") == _message("msg_1")
    assert view.get("msg_2") == _message("msg_2", user="u2")
    assert [m.message_id for m in view.pending("u2")] == ["msg_2"]
    view._on_record(b"msg_2", None)
    assert view.get("msg_2") is None
    assert view.finished("msg_2")
    view.remember(_message("msg_2", user="u2"))  # a stale local insert does not revive it
    assert view.get("msg_2") is None


def test_an_unreadable_record_is_refused_when_read_from_the_topic() -> None:
    view = MessagesView("127.0.0.1:1", "t.messages")
    with pytest.raises(msgspec.DecodeError):
        view._on_record(b"msg_1", b"not json")
    assert view.get("msg_1") is None


@pytest.fixture
def unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfreeze")
def test_settle_freezes_the_loaded_objects_out_of_every_generation() -> None:
    loaded = [[i] for i in range(1000)]  # tracked, long-lived: like a loaded view
    frozen = collector.settle()
    assert frozen >= len(loaded)
    assert not any(obj is loaded for g in range(3) for obj in gc.get_objects(generation=g))


def test_pause_watch_logs_a_long_collection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=collector.__name__)
    with collector.PauseWatch(long_s=0.0) as watch:
        gc.collect()
    assert watch.collections >= 1
    assert watch.longest_s > 0
    assert "generation 2 collection paused the event loop" in caplog.text
    assert "collections" in caplog.records[-1].getMessage()


@pytest.mark.usefixtures("unfreeze")
async def test_refreeze_freezes_what_the_views_added_since() -> None:
    gc.collect()
    gc.freeze()
    before = gc.get_freeze_count()
    grown = [[i] for i in range(1000)]  # entries a view added while the API ran
    async with collector.Refreeze(every_s=0.01):
        for _ in range(200):
            await asyncio.sleep(0.01)
            if gc.get_freeze_count() >= before + len(grown):
                break
    assert gc.get_freeze_count() >= before + len(grown)
    assert not any(obj is grown for g in range(3) for obj in gc.get_objects(generation=g))
