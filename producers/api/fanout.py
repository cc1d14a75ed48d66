"""The fan-out of a publish: the URLs it delivers to, and the request as built for each.

A publish to a URL has one :class:`Target`; a publish to a URL group one per endpoint
(ApiContext.targets resolves them). :func:`for_target` stamps one target onto a built request.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from kafstash.schemas.commands import PublishRequest


@dataclass(frozen=True, slots=True)
class Target:
    """One URL a publish delivers to; ``topic_name`` is set when it came from a group."""

    url: str
    topic_name: str | None = None
    endpoint_name: str | None = None


def for_target(req: PublishRequest, target: Target) -> PublishRequest:
    """``req`` as built for ``target.url``, marked with its group and endpoint.

    The dedup key gains the endpoint, so one deduplication id covers the whole fan-out without
    the second endpoint's message being taken for a duplicate of the first's.
    """
    if target.topic_name is None:
        return req
    message = msgspec.structs.replace(
        req.message, topic_name=target.topic_name, endpoint_name=target.endpoint_name
    )
    key = req.dedup_key
    if key is not None:
        key = f"{key}:group:{target.topic_name}:{target.endpoint_name or ''}:{target.url}"
    return msgspec.structs.replace(req, message=message, dedup_key=key)
