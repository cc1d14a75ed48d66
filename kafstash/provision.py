"""Creates the deployment's topics (idempotent): partitions, replication and per-topic config.

Then it waits until the roles' consumer groups have a coordinator, so the roles start on a
cluster that can take them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from kafstash.config import Settings
from kafstash.streams.app import TABLES

log = logging.getLogger(__name__)

_WEEK_MS = 7 * 24 * 3600 * 1000


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    t = settings.topics
    base = {"max.message.bytes": str(1024 * 1024 + 64 * 1024)}
    if settings.replication >= 3:
        base["min.insync.replicas"] = "2"
    configs = {name: {**base, "retention.ms": str(_WEEK_MS)} for name in t.all()}
    # Retries can wait up to a day and delays up to a year: the timers topic is the delay
    # table's input, so it must keep records at least as long as the longest delay.
    configs[t.timers]["retention.ms"] = str(366 * 24 * 3600 * 1000)
    configs[t.requests]["retention.ms"] = str(_WEEK_MS)
    configs[t.decisions]["retention.ms"] = str(3600 * 1000)
    for name in t.compacted():
        configs[name] = {**base, "cleanup.policy": "compact"}
    # faust would create its changelogs lazily and racily; creating them here (compacted, with
    # the source topics' partition count) makes a first start deterministic.
    for table in TABLES:
        configs[f"{settings.streams_app_id}-{table}-changelog"] = {
            **base,
            "cleanup.policy": "compact",
        }
    return configs


async def ensure_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.require_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=name,
                num_partitions=settings.partitions,
                replication_factor=settings.replication,
                topic_configs=cfg,
            )
            for name, cfg in topic_configs(settings).items()
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics(wanted)
            log.info("created topics: %s", ", ".join(t.name for t in wanted))
        await wait_for_group_coordinators(admin, consumer_groups(settings))
    finally:
        await admin.close()


def consumer_groups(settings: Settings) -> tuple[str, ...]:
    """The consumer groups the roles join: faust's app id is its group id; the stream workers'
    intake has its own."""
    return (
        settings.streams_app_id,
        f"{settings.streams_app_id}-intake",
        settings.sender_group,
        settings.archiver_group,
    )


async def wait_for_group_coordinators(
    admin: AIOKafkaAdminClient,
    groups: Sequence[str],
    *,
    timeout_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once FindCoordinator answers for every group (or warn after ``timeout_s``).

    On a fresh cluster the first FindCoordinator creates ``__consumer_offsets``, and until its
    partitions are loaded the broker answers COORDINATOR_NOT_AVAILABLE. A consumer that meets
    that logs it at ERROR (aiokafka's group coordinator) and retries: harmless, but an ERROR in
    every healthy first start. Waiting here lets the roles find their coordinator at once.
    """
    deadline = clock() + timeout_s
    for group in groups:
        while True:
            try:
                await admin.find_coordinator(group)
                break
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                if clock() >= deadline:
                    # The roles retry on their own; a slow coordinator is not worth failing for.
                    log.warning("no group coordinator for %s after %gs: %s", group, timeout_s, exc)
                    return
                await asyncio.sleep(0.1)
