"""Signing keys of a user: the record on the compacted ``<prefix>.keys`` topic, and rotation."""

from msgspec import Struct

from kafstash.schemas import codec, ids
from kafstash.schemas.users import User


class SigningKeys(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="signing-keys.v1"
):
    """The keys of ``user_id`` since ``rotated_at`` (ms). Topic ``<prefix>.keys``, key = user id.

    Deliveries are signed with ``current``; receivers also accept ``next``, so a rotation (next
    becomes current) never makes a receiver that holds both keys reject a request. A user with no
    record here uses the keys configured for it (KAFSTASH_USERS).
    """

    user_id: str
    current: str
    next: str
    rotated_at: int = 0


def decode_keys(_key: str, value: bytes) -> SigningKeys:
    """A record of the ``keys`` topic (keyed by user id), for the API's and the senders' views."""
    return codec.decode(value, SigningKeys)


def configured(user: User) -> SigningKeys:
    return SigningKeys(
        user_id=user.user_id, current=user.current_signing_key, next=user.next_signing_key
    )


def rotate(keys: SigningKeys, *, now_ms: int, new_key: str | None = None) -> SigningKeys:
    """QStash's rotation: the old next key becomes current, a fresh key becomes next."""
    return SigningKeys(
        user_id=keys.user_id,
        current=keys.next,
        next=new_key or ids.signing_key(),
        rotated_at=now_ms,
    )
