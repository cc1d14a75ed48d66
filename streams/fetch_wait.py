"""How long the broker may hold a stream worker's fetch: 100 ms, not faust's fixed 1.5 s.

aiokafka keeps one fetch in flight per broker and leaves out of it every partition whose records
are still buffered, not yet consumed. When the partitions left in are idle, the broker holds
that fetch for ``fetch_max_wait_ms`` (faust passes 1,500) while records pile up on the ones left
out. The timers benchmark (``--timers 100000``) caught the agent of ``<p>.timers`` idle for
1.1 s in the middle of a burst of fires, hundreds of FireMany records waiting on its partitions
while the fetch in flight held only idle ones. With 100 ms a busy partition waits at most that
for the idle ones; an idle worker sends ten small fetches a second to each broker instead of
two thirds of one.
"""

from __future__ import annotations

from typing import Any

FETCH_MAX_WAIT_MS = 100


def shorten(consumer: Any) -> Any:
    """Make the aiokafka consumer that faust's consumer ``consumer`` creates (in its thread,
    when it starts) wait ``FETCH_MAX_WAIT_MS`` per fetch at most; returns ``consumer``."""
    thread = consumer._thread
    create = thread._create_consumer

    def create_shortened(loop: Any) -> Any:
        client = create(loop)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher; faust offers no setting.
        client._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return client

    thread._create_consumer = create_shortened
    return consumer
