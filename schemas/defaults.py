"""Every default and limit in one place (wire-visible ones match QStash where documented)."""

from typing import Final

DEFAULT_RETRIES: Final = 3
MAX_RETRIES: Final = 20
BACKOFF_CAP_S: Final = 86_400  # retries never wait longer than a day
BACKOFF_EXPONENT: Final = 2.5  # delay before retry n is min(cap, e^(2.5 n)) seconds
RETRY_AFTER_CAP_S: Final = 86_400  # a destination's Retry-After above this is ignored
DEFAULT_TIMEOUT_MS: Final = 15 * 60 * 1000  # QStash free plan's max response time
MAX_DELAY_MS: Final = 365 * 24 * 3600 * 1000  # QStash pay-as-you-go max delay: one year
DEDUP_WINDOW_MS: Final = 3600 * 1000  # one hour (configurable with KAFSTASH_DEDUP_WINDOW)
# A cancelled message's marker outlives any attempt still in flight at a sender (an attempt is
# bounded by DEFAULT_TIMEOUT_MS), then goes, so cancelled ids do not pile up in the table.
CANCELED_MARKER_TTL_MS: Final = 24 * 3600 * 1000
SIGNATURE_TTL_S: Final = 300  # Upstash-Signature JWTs live 5 minutes
# Kafka's default max.message.bytes is 1 MiB; the body limit leaves room for headers and the
# JSON envelope (bodies are base64 in JSON: 4/3 growth) and is documented in the README.
MAX_BODY_BYTES: Final = 512 * 1024
MAX_TOPIC_MESSAGE_BYTES: Final = 1024 * 1024
MAX_BATCH_ITEMS: Final = 100
DEFAULT_PARTITIONS: Final = 8
DEFAULT_TOPIC_PREFIX: Final = "kafstash"
DEV_PORT: Final = 8080
# Request header limits of the API (431 above): forwarded headers per request, bytes of all headers.
MAX_FORWARD_HEADERS: Final = 100
MAX_HEADER_BYTES: Final = 16 * 1024
# A callback's body carries the source body in base64 and travels base64-encoded once more in
# its PublishRequest: keep the copy small enough that the record stays under the topic limit.
CALLBACK_SOURCE_BODY_LIMIT: Final = 256 * 1024
# The events view (GET /v2/events, /v2/logs) keeps this much of <prefix>.events in memory
# (KAFSTASH_EVENTS_RETENTION, seconds); older events stay in Kafka and the Iceberg log.
EVENTS_RETENTION_MS: Final = 24 * 3600 * 1000
# ... and at most this many events, the oldest dropped first, so memory stays bounded.
EVENTS_MAX_KEPT: Final = 1_000_000
EVENTS_PAGE_DEFAULT: Final = 100
EVENTS_PAGE_MAX: Final = 1000  # qstash-py documents 1000; OAS says 100 (qstash-api.md §12)
SIGNING_KEY_CHARS: Final = 32  # "sig_" + 28, like QStash's keys
# Queues and flow control: ids of recently finished messages each gate remembers, so that a
# replayed Admit (at-least-once processing) cannot let a finished message through twice.
GATE_RECENT_IDS: Final = 200
DEFAULT_QUEUE_PARALLELISM: Final = 1
MAX_FLOW_CONTROL_PERIOD_S: Final = 7 * 24 * 3600  # Upstash-Flow-Control-Value period: 1 week
GLOBAL_PARALLELISM_MAX: Final = 0  # /v2/globalParallelism: 0 = no account-wide limit
# Destination hosts the sender's metrics name one by one (KAFSTASH_METRICS_MAX_HOSTS); the rest
# share the label "other", so a fan-out to many hosts cannot blow up Prometheus' series count.
DEFAULT_MAX_METRIC_HOSTS: Final = 50
# A replay of a claimed dedup row reads back its records from this long before the claim: the
# claim's time is the stream worker's clock, a record's the producer's (streams/replay.py).
REPLAY_MARGIN_MS: Final = 5_000
