"""The kafstash Python client: publish, batch, enqueue, messages and schedules over the QStash
v2 API, sync (``Client``) and async (``AsyncClient``), and the ``Receiver`` of signed deliveries.

::

    from kafstash import Client, Receiver

    with Client(token="...", base_url="http://127.0.0.1:8080") as client:
        client.publish_json(url="https://example.com/hook", body={"hi": 1}, delay="5m")

Both clients send the ``Call`` values built in ``_requests`` (one request-building core); they
differ only in how they wait. Durations are ``"5m"``/``"1d2h"``/``"500ms"`` or int milliseconds.
"""

from kafstash.producers.client._async import AsyncClient, AsyncSchedules
from kafstash.producers.client._errors import (
    ApiError,
    InvalidArgument,
    KafstashError,
    NetworkError,
    NotFound,
    ProtocolError,
    RateLimitError,
    SignatureError,
    Unauthorized,
)
from kafstash.producers.client._requests import BatchMessage, MessageOptions, PublishOptions
from kafstash.producers.client._results import Message, PublishResult, Schedule
from kafstash.producers.client._sync import Client, Schedules
from kafstash.producers.client.receiver import Receiver

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncSchedules",
    "BatchMessage",
    "Client",
    "InvalidArgument",
    "KafstashError",
    "Message",
    "MessageOptions",
    "NetworkError",
    "NotFound",
    "ProtocolError",
    "PublishOptions",
    "PublishResult",
    "RateLimitError",
    "Receiver",
    "Schedule",
    "Schedules",
    "SignatureError",
    "Unauthorized",
]
