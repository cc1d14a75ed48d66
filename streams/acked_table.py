"""A faust table whose latest changelog record can be awaited: a claim is durable before use.

faust writes a row's changelog record in the background (``send_soon``) and drops its future,
so the only wait it offers is a flush of everything the producer holds, which does not say
whether that one record was acknowledged or failed. A dedup claim must be acknowledged before
the records it guards are produced (streams/dedup.py): :attr:`AckedTable.last_write` is the
future of the latest changelog record, resolved on the broker's acknowledgement and failed
with the producer's error.
"""

from __future__ import annotations

from typing import Any

import faust


class AckedTable(faust.Table[bytes, bytes]):
    last_write: Any = None  # faust's FutureMessage (an asyncio.Future of RecordMetadata)

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self.last_write = fut
        return fut
