"""``GET /v2/keys`` and ``POST /v2/keys/rotate``: the signing keys view over ``<prefix>.keys``.

The topic is compacted and keyed by user id, so it holds each user's latest keys; a user with no
record there signs with the keys configured for it. The senders follow the same topic.
"""

from __future__ import annotations

from typing import Any

from kafstash.schemas.keys import SigningKeys, configured, decode_keys
from kafstash.schemas.users import User
from kafstash.views.compacted import CompactedView

KeysView = CompactedView[SigningKeys]


def open_view(bootstrap: str, keys_topic: str) -> KeysView:
    return CompactedView(bootstrap, keys_topic, decode_keys)


def keys_of(view: KeysView | None, user: User) -> SigningKeys:
    """The user's latest keys; the configured ones before any rotation (or without a view)."""
    rotated = view.get(user.user_id) if view is not None else None
    return rotated or configured(user)


def keys_json(keys: SigningKeys) -> dict[str, Any]:
    return {"current": keys.current, "next": keys.next}
