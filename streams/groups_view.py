"""The stream workers' copy of the URL groups, followed from the compacted ``state`` topic.

The API is the groups' only writer (``group/<user>/<name>`` records in ``<prefix>.state``,
schemas/groups.py); a schedule whose destination is a group needs their current endpoints at
every tick, on whichever worker owns the schedule. Every worker therefore reads the group
records of every partition from the beginning at each start and keeps following
(kafstash.views.compacted). :meth:`GroupsView.get` waits until the first read reached the end
offsets seen at start (the tick runtime checks :attr:`GroupsView.ready` and retries the tick
later instead), so a worker that just restarted never takes an existing group for a deleted one.
"""

from __future__ import annotations

import asyncio
import logging

from kafstash.schemas.groups import UrlGroup, decode_group, group_key
from kafstash.views.compacted import CompactedView

log = logging.getLogger(__name__)

_RETRY_S = 1.0


class GroupsView:
    """Latest :class:`UrlGroup` per key; :meth:`run` (a long-lived task) keeps it current."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._view = CompactedView(bootstrap, topic, decode_group)
        self.ready = self._view.ready

    async def get(self, user_id: str, name: str) -> UrlGroup | None:
        """The group as it is now; waits for the first catch-up after start."""
        await self.ready.wait()
        return self.lookup(user_id, name)

    def lookup(self, user_id: str, name: str) -> UrlGroup | None:
        """The group as it is now; only meaningful once :attr:`ready` is set."""
        return self._view.get(group_key(user_id, name))

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the state topic, applied to the view (tests feed records this way)."""
        self._view.apply(key, value)

    async def run(self) -> None:
        """Follow the topic until cancelled. Until the follower started (the broker answers,
        provisioning created the topic) it retries; once it follows, it rides out broker
        errors itself."""
        while True:
            try:
                async with self._view:
                    log.info("url groups view caught up: %s", self._topic)
                    await asyncio.Event().wait()  # follows until this task is cancelled
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("url groups view: reading %s failed, retrying", self._topic)
                await asyncio.sleep(_RETRY_S)
