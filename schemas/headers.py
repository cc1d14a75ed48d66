"""HTTP header names of the QStash wire contract (lower-case forms: compare case-insensitively)."""

from typing import Final

METHOD: Final = "upstash-method"
DELAY: Final = "upstash-delay"
NOT_BEFORE: Final = "upstash-not-before"
RETRIES: Final = "upstash-retries"
RETRY_DELAY: Final = "upstash-retry-delay"
TIMEOUT: Final = "upstash-timeout"
CALLBACK: Final = "upstash-callback"
FAILURE_CALLBACK: Final = "upstash-failure-callback"
DEDUP_ID: Final = "upstash-deduplication-id"
CONTENT_DEDUP: Final = "upstash-content-based-deduplication"
LABEL: Final = "upstash-label"
REDACT_FIELDS: Final = "upstash-redact-fields"
FLOW_CONTROL_KEY: Final = "upstash-flow-control-key"
FLOW_CONTROL_VALUE: Final = "upstash-flow-control-value"
FORWARD_PREFIX: Final = "upstash-forward-"
TELEMETRY_PREFIX: Final = "upstash-telemetry-"
WORKFLOW_PREFIX: Final = "upstash-workflow-"
WORKFLOW_INVOKE: Final = "upstash-workflow-invoke"
CONTENT_TYPE: Final = "content-type"

# Set by kafstash on every delivery; a user can never forward or override these.
OUT_MESSAGE_ID: Final = "Upstash-Message-Id"
OUT_RETRIED: Final = "Upstash-Retried"
OUT_SIGNATURE: Final = "Upstash-Signature"
OUT_TOPIC_NAME: Final = "Upstash-Topic-Name"
OUT_SCHEDULE_ID: Final = "Upstash-Schedule-Id"
OUT_CALLER_IP: Final = "Upstash-Caller-Ip"
USER_AGENT: Final = "Upstash-QStash"

# The destination's answer that stops retries at once.
NON_RETRYABLE_STATUS: Final = 489
NON_RETRYABLE_HEADER: Final = "upstash-nonretryable-error"

# Connection-level headers that are never forwarded (RFC 9110 §7.6.1) plus ones we own.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

# Schedules (POST /v2/schedules/{destination}).
CRON: Final = "upstash-cron"
SCHEDULE_ID: Final = "upstash-schedule-id"
QUEUE_NAME: Final = "upstash-queue-name"
