"""Dead-letter entries: a message that failed for good, kept so it can be read, retried or deleted.

The sender appends one :class:`DlqEntry` with the FAILED event, to the compacted ``<prefix>.dlq``
topic under :func:`dlq_key`. The id is derived from the failed attempt itself (message and attempt
number), so a sender that replays the attempt after a crash overwrites the same key instead
of adding a second entry.
"""

from __future__ import annotations

import zlib

from msgspec import Struct

from kafstash.schemas.message import Message


class DlqEntry(
    Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
    tag_field="type",
    tag="dlq.v1",
    omit_defaults=True,
):
    """One dead letter. ``message`` is the original, unredacted message: a retry delivers it.

    ``response_status`` is ``None`` when the last attempt got no answer (timeout, network error,
    refused destination); ``error`` then says why. Times are Unix milliseconds.
    """

    dlq_id: str
    message: Message
    failed_at: int
    retried: int
    response_status: int | None = None
    response_header: dict[str, list[str]] = {}
    response_body: bytes | None = None
    error: str | None = None


def dlq_id(*, message: Message, retried: int) -> str:
    """``<unixMillis>-<n>`` (QStash's shape), the same for every replay of one attempt.

    Only the message and the attempt number go in: a replayed attempt may run at another time
    (even twice, when a retry's Schedule was replayed), and must still land on the same entry.
    The millis are the message's creation time; entries are listed in ``failed_at`` order.
    """
    n = zlib.crc32(f"{message.message_id}/{retried}".encode())
    return f"{message.created_at}-{n}"


def dlq_key(user_id: str, dlq_id_: str) -> str:
    return f"{user_id}/{dlq_id_}"
