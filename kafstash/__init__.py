"""kafstash: self-hosted, QStash-compatible HTTP messaging on Apache Kafka.

This package is the composition root: configuration, the CLI and the wiring of the rooms
(``schemas``, ``producers``, ``streams``, ``sinks``, ``infra``). It also re-exports the Python
client (``from kafstash import Client, AsyncClient, Receiver``), lazily, so the CLI and the
roles do not import httpx and PyJWT until a client is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kafstash.producers.client import (
        ApiError,
        AsyncClient,
        Client,
        KafstashError,
        Message,
        NotFound,
        PublishResult,
        RateLimitError,
        Receiver,
        Schedule,
        SignatureError,
        Unauthorized,
    )

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "KafstashError",
    "Message",
    "NotFound",
    "PublishResult",
    "RateLimitError",
    "Receiver",
    "Schedule",
    "SignatureError",
    "Unauthorized",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("kafstash.producers.client"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
