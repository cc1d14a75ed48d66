"""The stream workers' aiokafka consumer waits 100 ms per fetch at most, not faust's 1.5 s."""

import asyncio

from kafstash.streams import fetch_wait, refetch


def test_the_consumer_faust_creates_waits_at_most_100_ms_per_fetch() -> None:
    async def created() -> int:
        app = refetch.App("fetch-wait-test", broker="kafka://127.0.0.1:1", web_enabled=False)
        thread = app.consumer._thread
        client = thread._create_consumer(asyncio.get_running_loop())
        try:
            # What AIOKafkaConsumer.start() hands its fetcher: an aiokafka upgrade that renames
            # it fails here, not silently in production.
            wait: int = client._fetch_max_wait_ms
        finally:
            await client.stop()  # never started: only marks it closed
            thread.thread_loop.close()  # made for the consumer thread, which never ran
        return wait

    assert asyncio.run(created()) == fetch_wait.FETCH_MAX_WAIT_MS == 100
