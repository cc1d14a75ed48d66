"""OffsetTracker: the committable offset while deliveries finish out of order."""

from kafstash.sinks.http.offsets import OffsetTracker


def test_nothing_started_commits_nothing() -> None:
    tracker = OffsetTracker()

    assert tracker.committable() is None
    assert tracker.in_flight == 0


def test_in_flight_offsets_hold_the_position_at_the_lowest() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.start(offset)

    assert tracker.committable() == 10
    assert tracker.in_flight == 3


def test_out_of_order_completion_keeps_the_lowest_unfinished() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.start(offset)

    tracker.done(12)
    assert tracker.committable() == 10
    tracker.done(11)
    assert tracker.committable() == 10
    tracker.done(10)
    assert tracker.committable() == 13  # 10, 11 and 12 are done; 13 is not
    assert tracker.in_flight == 1
    tracker.done(13)
    assert tracker.committable() == 14


def test_all_done_commits_after_the_highest() -> None:
    tracker = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.start(offset)
    for offset in (7, 5, 6):
        tracker.done(offset)

    assert tracker.committable() == 8
    assert tracker.in_flight == 0


def test_new_offsets_after_all_done_hold_the_position_again() -> None:
    tracker = OffsetTracker()
    tracker.start(0)
    tracker.done(0)
    assert tracker.committable() == 1

    tracker.start(1)
    tracker.start(2)
    tracker.done(2)

    assert tracker.committable() == 1


def test_gaps_in_offsets_are_fine() -> None:
    # Compacted or transactional topics skip offsets; commit after the highest seen.
    tracker = OffsetTracker()
    tracker.start(3)
    tracker.start(9)
    tracker.done(3)
    assert tracker.committable() == 9
    tracker.done(9)
    assert tracker.committable() == 10


def test_done_twice_is_harmless() -> None:
    tracker = OffsetTracker()
    tracker.start(1)
    tracker.start(2)
    tracker.done(1)
    tracker.done(1)

    assert tracker.committable() == 2
    assert tracker.in_flight == 1
