"""The stored message: everything a delivery needs, fixed at publish time."""

from msgspec import Struct

from kafstash.schemas.workflow_tag import WorkflowTag


class FlowControl(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """``Upstash-Flow-Control-Key`` / ``-Value``: limits shared by every message with ``key``.

    ``period`` is in seconds (QStash's unit in responses); ``None`` means "no limit of that kind".
    """

    key: str
    parallelism: int | None = None
    rate: int | None = None
    period: int = 1


class CallbackOptions(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """How the callback (or failure callback) message of a message is sent.

    From ``Upstash-Callback-*`` / ``Upstash-Failure-Callback-*``: ``header`` holds the headers
    delivered to the callback URL (Go-canonical names to value lists); unset options inherit the
    source message's (retries) or QStash's defaults.
    """

    method: str = "POST"
    header: dict[str, list[str]] = {}
    retries: int | None = None
    retry_delay_expression: str | None = None
    timeout_ms: int | None = None
    delay_ms: int | None = None
    # ``Upstash-Callback-Workflow-RunId`` and friends: the callback message joins that run.
    workflow: WorkflowTag | None = None


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
    flow_control: FlowControl | None = None
    callback_options: CallbackOptions | None = None
    failure_callback_options: CallbackOptions | None = None
    # ``Upstash-Redact-Fields`` (``body``, ``header``, ``header[Name]``): these are shown as
    # ``REDACTED:<sha256>`` everywhere a message is stored for reading (views, events, DLQ
    # listings, the Iceberg log); only the delivery itself uses the originals.
    redact: list[str] = []
    # Set on a callback / failure-callback message only: when it is DELIVERED or FAILED, the
    # queue slots of message ``release_of`` in gates ``release_gates`` are freed (QStash keeps a
    # queue's next message back until the current one's callback has finished too).
    release_of: str | None = None
    release_gates: list[str] = []
    # The Upstash Workflow run this message belongs to (schemas/workflow.py).
    workflow: WorkflowTag | None = None
