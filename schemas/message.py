"""The stored message: everything a delivery needs, fixed at publish time."""

from msgspec import Struct


class Message(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """One message to one destination URL.

    ``header`` holds the headers delivered to the destination, Go-canonical names to value lists
    (QStash's stored shape): forwarded headers with their prefix stripped, plus Content-Type.
    Times are Unix milliseconds.
    """

    message_id: str
    user_id: str
    url: str
    created_at: int
    not_before: int
    method: str = "POST"
    header: dict[str, list[str]] = {}
    body: bytes = b""
    max_retries: int = 3
    retry_delay_expression: str | None = None
    timeout_ms: int | None = None
    callback: str | None = None
    failure_callback: str | None = None
    dedup_id: str | None = None
    labels: list[str] = []
    caller_ip: str | None = None
    topic_name: str | None = None
    endpoint_name: str | None = None
    queue_name: str | None = None
    schedule_id: str | None = None
