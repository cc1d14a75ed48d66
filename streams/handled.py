"""An agent's event is handled to the end before faust may acknowledge it.

faust acknowledges an event in a ``finally`` around the ``yield`` that hands it to the agent
(``Stream._py_aiter`` in faust/streams.py): when the agent's body raises, the event is
acknowledged anyway, the next offset commit moves past it, and the supervisor restarts the agent
on the following event. A request whose handling failed (a send the producer gave up on, a bug
on one input) would be lost without a word. :func:`until_handled` runs the handler again after
a pause instead, as a restarted worker would replay it: every handler is already safe to replay
(docs/architecture.md, "Failure model"). The agent waits meanwhile (its lag shows it, and the log
names the record), and nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

FIRST_PAUSE_S = 0.1
LONGEST_PAUSE_S = 5.0


class Where(Protocol):
    """Where a record was read (a faust ``Message``): named in the log when handling fails."""

    topic: str
    partition: int
    offset: int


async def until_handled(
    handle: Callable[[], Awaitable[None]],
    *,
    what: str,
    at: Where,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Await ``handle()`` until it returns, pausing between tries (doubling, capped at
    ``LONGEST_PAUSE_S``). Cancellation (a rebalance, a stop) goes through at once."""
    pause = FIRST_PAUSE_S
    while True:
        try:
            await handle()
            return
        except Exception:
            log.exception(
                "handling %s %s/%d@%d failed; handling it again in %gs",
                what, at.topic, at.partition, at.offset, pause,
            )  # fmt: skip
        await sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE_S)
