"""The signing keys a sender signs with: the configured ones, replaced by ``<prefix>.keys``.

``POST /v2/keys/rotate`` appends a ``SigningKeys`` record keyed by user id to the compacted keys
topic; every sender follows that topic from its beginning (kafstash.views.compacted) and signs
with the user's latest ``current`` key. Rotation makes the old *next* key current, so a receiver
still holding the keys it had before the rotation (current + next) accepts requests signed before
and after it.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

from kafstash.schemas.keys import SigningKeys, decode_keys
from kafstash.schemas.users import User
from kafstash.views.compacted import CompactedView
from kafstash.views.follower import TopicMissing

log = logging.getLogger(__name__)

KeysView = CompactedView[SigningKeys]


def keys_view(bootstrap: str, topic: str) -> KeysView:
    return CompactedView(bootstrap, topic, decode_keys)


class SigningKeyBook:
    """user id → the key to sign with now; entered, it has read the keys topic to its end, so a
    restarted sender signs nothing with a stale key."""

    def __init__(self, users: tuple[User, ...], rotated: KeysView) -> None:
        self._configured = {u.user_id: u.current_signing_key for u in users}
        self._rotated = rotated
        self._following = False

    def current(self, user_id: str) -> str | None:
        keys = self._rotated.get(user_id)
        return keys.current if keys is not None else self._configured.get(user_id)

    async def __aenter__(self) -> Self:
        try:
            await self._rotated.__aenter__()
        except TopicMissing as exc:
            log.warning("%s: signing with the configured keys", exc)
        else:
            self._following = True
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._following:
            await self._rotated.__aexit__(et, e, tb)
