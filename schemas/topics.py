"""Topic names. One prefix per deployment (or per test) keeps deployments apart on one cluster."""

from dataclasses import dataclass

from kafstash.schemas.defaults import DEFAULT_TOPIC_PREFIX


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one kafstash deployment.

    - ``requests``: PublishRequest commands from the API or any Kafka producer; keyed by the
      dedup key when there is one (so duplicates meet on one partition), else by message id.
    - ``table_requests``: the requests the accept step can only decide with its tables (a dedup
      key, a workflow run, waitForEvent), forwarded from ``requests`` by the stream workers'
      intake under the same key; every other request is accepted by the intake itself.
    - ``timers``: TimerCommand (Schedule / Fire / FireMany / Cancel) keyed by message id: the
      delay table (a FireMany goes to the partition of all its message ids, keyed by the first).
    - ``deliveries``: DeliveryDue keyed by message id; consumed by the sender group.
    - ``events``: MessageEvent state changes keyed by message id (the audit log's source).
    - ``messages``: compacted view of pending messages (Message or a tombstone) keyed by message id.
    - ``decisions``: Accepted replies for requests whose caller waits for the dedup decision.
    - ``schedules``: compacted schedule definitions (ScheduleSpec or a tombstone) keyed
      ``<user>/<schedule id>``; the cron table in ``streams/`` is built from it.
    - ``gates``: GateCommand records (queues and flow control) keyed by gate key
      (``q/<user>/<queue>`` or ``f/<user>/<flow-control key>``).
    - ``state``: compacted read models written by their single owner (stream workers for
      schedule, queue and flow-control state; the API for URL groups), keyed
      ``<kind>/<user>/<id>``; the API's read views are built from it.
    - ``dlq``: compacted dead-letter entries (DlqEntry or a tombstone) keyed ``<user>/<dlq id>``.
    - ``keys``: compacted signing keys (SigningKeys) keyed by user id; absent = configured keys.
    """

    prefix: str = DEFAULT_TOPIC_PREFIX

    @property
    def requests(self) -> str:
        return f"{self.prefix}.requests"

    @property
    def table_requests(self) -> str:
        return f"{self.prefix}.table-requests"

    @property
    def timers(self) -> str:
        return f"{self.prefix}.timers"

    @property
    def deliveries(self) -> str:
        return f"{self.prefix}.deliveries"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def messages(self) -> str:
        return f"{self.prefix}.messages"

    @property
    def decisions(self) -> str:
        return f"{self.prefix}.decisions"

    @property
    def schedules(self) -> str:
        return f"{self.prefix}.schedules"

    @property
    def gates(self) -> str:
        return f"{self.prefix}.gates"

    @property
    def state(self) -> str:
        return f"{self.prefix}.state"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def keys(self) -> str:
        return f"{self.prefix}.keys"

    def all(self) -> tuple[str, ...]:
        return (
            self.requests,
            self.table_requests,
            self.timers,
            self.deliveries,
            self.events,
            self.messages,
            self.decisions,
            self.schedules,
            self.gates,
            self.state,
            self.dlq,
            self.keys,
        )

    def compacted(self) -> frozenset[str]:
        return frozenset({self.messages, self.schedules, self.state, self.dlq, self.keys})
