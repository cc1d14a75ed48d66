"""The API's read model of schedules and their QStash JSON shape (qstash-api.md §8.4).

Schedules are read from the compacted ``state`` topic, where the stream worker that owns each
schedule publishes its :class:`ScheduleState` (keys ``schedule/<user>/<id>``). This API's own
writes are visible at once (``put``/``drop``) and are not undone by an older state still on its
way: the view's floor is the spec's ``updated_at`` (kafstash.views.compacted, shared with the
gate states). The stream worker publishes the states of one schedule in the order of its specs.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Self

from kafstash.producers.api.views import body_fields
from kafstash.producers.kafka_log import MessagesView
from kafstash.schemas import codec
from kafstash.schemas.redact import redacted
from kafstash.schemas.schedules import STATE_KIND, ScheduleState, state_key
from kafstash.views.compacted import CompactedView

ScheduleMessageState = Literal["IN_PROGRESS", "SUCCESS", "FAIL"]
# The state of one message of the last firing; the lead connects an events-based view here.
MessageStateFn = Callable[[str], ScheduleMessageState]


def pending_message_state(messages: MessagesView) -> MessageStateFn:
    """A message still pending (or not seen yet) is IN_PROGRESS, a finished one SUCCESS.

    The messages view cannot tell a delivered message from a failed one; an events-based view
    that can (``latest_state(message_id)``) replaces this function.
    """

    def state(message_id: str) -> ScheduleMessageState:
        if messages.get(message_id) is None and messages.finished(message_id):
            return "SUCCESS"
        return "IN_PROGRESS"

    return state


def event_message_state(
    latest: Callable[[str], str | None], fallback: MessageStateFn
) -> MessageStateFn:
    """From the events view's last state of a message: DELIVERED is SUCCESS, FAILED or CANCELED
    FAIL, anything else in flight; a message the events view no longer holds asks ``fallback``.
    """

    def state(message_id: str) -> ScheduleMessageState:
        match latest(message_id):
            case "DELIVERED":
                return "SUCCESS"
            case "FAILED" | "CANCELED":
                return "FAIL"
            case None:
                return fallback(message_id)
            case _:
                return "IN_PROGRESS"

    return state


class ScheduleView:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self._view = CompactedView(bootstrap, topic, _decode, version=_updated_at)

    async def __aenter__(self) -> Self:
        await self._view.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._view.__aexit__(et, e, tb)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the state topic (tests feed records this way)."""
        self._view.apply(key, value)

    def get(self, user_id: str, schedule_id: str) -> ScheduleState | None:
        return self._view.get(state_key(user_id, schedule_id))

    def list(self, user_id: str) -> list[ScheduleState]:
        states = [s for _, s in self._view.scan(f"{STATE_KIND}/{user_id}/")]
        return sorted(states, key=lambda s: (s.spec.created_at, s.spec.schedule_id))

    def put(self, state: ScheduleState) -> None:
        self._view.put(state_key(state.spec.user_id, state.spec.schedule_id), state)

    def drop(self, user_id: str, schedule_id: str, at_ms: int) -> None:
        self._view.drop(state_key(user_id, schedule_id), at_ms)


def _decode(key: str, value: bytes) -> ScheduleState | None:
    if not key.startswith(f"{STATE_KIND}/"):
        return None  # other kinds share the state topic
    return codec.decode(value, ScheduleState)


def _updated_at(state: ScheduleState) -> int:
    return state.spec.updated_at


def schedule_json(state: ScheduleState, message_state: MessageStateFn) -> dict[str, Any]:
    spec = state.spec
    m = redacted(spec.template)  # Upstash-Redact-Fields applies to every stored copy
    out: dict[str, Any] = {
        "scheduleId": spec.schedule_id,
        "destination": spec.destination,
        "cron": spec.cron,
        "createdAt": spec.created_at,
        "method": m.method,
        "retries": m.max_retries,
        "isPaused": spec.paused,
        "header": m.header,
        **body_fields(m.body),
    }
    optional: dict[str, Any] = {
        "callback": m.callback,
        "failureCallback": m.failure_callback,
        "retryDelayExpression": m.retry_delay_expression,
        "queueName": spec.queue_name,
        "lastScheduleTime": state.last_schedule_time,
        "nextScheduleTime": state.next_schedule_time,
        "error": state.error,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if spec.delay_ms:
        out["delay"] = spec.delay_ms // 1000  # seconds (§2)
    if m.timeout_ms is not None:
        out["timeout"] = -(-m.timeout_ms // 1000)
    if m.callback_options is not None and m.callback_options.header:
        out["callbackHeader"] = m.callback_options.header
    if m.failure_callback_options is not None and m.failure_callback_options.header:
        out["failureCallbackHeader"] = m.failure_callback_options.header
    if fc := m.flow_control:
        out["flowControlKey"] = fc.key
        out.update({k: v for k, v in (("parallelism", fc.parallelism), ("rate", fc.rate)) if v})
        out["period"] = fc.period
    if spec.caller_ip:
        # PY-sdk reads callerIP, JS types say callerIp: both are emitted.
        out["callerIP"] = out["callerIp"] = spec.caller_ip
    if m.labels:
        out["label"] = m.labels[0]
        out["labels"] = m.labels
    if state.last_message_ids:
        out["lastScheduleStates"] = {mid: message_state(mid) for mid in state.last_message_ids}
    return out
