"""Creates the deployment's topics (idempotent): partitions, replication and per-topic config."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

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
    finally:
        await admin.close()
