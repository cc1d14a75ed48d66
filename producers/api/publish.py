"""From a publish request's headers and body to the PublishRequest command (pure, no I/O)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from kafstash.producers.api.callbacks import parse_callbacks
from kafstash.producers.api.errors import ApiError, PayloadTooLarge
from kafstash.producers.api.flow_control_value import parse_flow_control
from kafstash.producers.api.workflow_headers import parse_workflow
from kafstash.producers.durations import parse_duration_ms
from kafstash.schemas import defaults, headers, ids
from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.message import Message
from kafstash.schemas.redact import InvalidRedactFields, parse_redact_fields
from kafstash.schemas.retry_delay import InvalidRetryDelay, parse_retry_delay
from kafstash.schemas.users import User
from kafstash.schemas.workflow import Invoker

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class PublishLimits:
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    dedup_window_ms: int = defaults.DEDUP_WINDOW_MS


def canonical(name: str) -> str:
    """Go's canonical MIME header key (``x-my-header`` → ``X-My-Header``), QStash's stored form."""
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


class HeaderView:
    """Case-insensitive, multi-valued view of request headers (names compared in lower case)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._pairs = [(k.lower(), k, v) for k, v in pairs]
        self._first: dict[str, str] = {}
        for low, _, value in self._pairs:
            self._first.setdefault(low, value)

    def get(self, name: str) -> str | None:
        return self._first.get(name)

    def items(self) -> list[tuple[str, str, str]]:
        """(lower name, name as sent, value) triples in arrival order."""
        return self._pairs


_MAX_DELAY_DAYS = defaults.MAX_DELAY_MS // 86_400_000


def _int_header(view: HeaderView, name: str) -> int | None:
    raw = view.get(name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise ApiError(f"invalid {canonical(name)} header: {raw!r} is not an integer") from None


def _forwarded(view: HeaderView) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    direct_ct = view.get(headers.CONTENT_TYPE)
    if direct_ct is not None:
        out["Content-Type"] = [direct_ct]
    for low, _, value in view.items():
        if not low.startswith(headers.FORWARD_PREFIX):
            continue
        name = low[len(headers.FORWARD_PREFIX) :]
        if not name or name in headers.HOP_BY_HOP:
            continue
        key = canonical(name)
        if key == "Content-Type":
            # An explicitly forwarded Content-Type is the user's choice; it beats the request's own.
            out[key] = [value]
        else:
            out.setdefault(key, []).append(value)
    return out


def _redact_fields(view: HeaderView) -> list[str]:
    try:
        return parse_redact_fields(view.get(headers.REDACT_FIELDS))
    except InvalidRedactFields as exc:
        raise ApiError(f"invalid Upstash-Redact-Fields header: {exc}") from None


def parse_labels(raw: str | None) -> list[str]:
    if not raw:
        return []
    return [label.strip() for label in raw.split(",") if label.strip()]


def _not_before(view: HeaderView, now_ms: int) -> int:
    """When the message may first be delivered: Upstash-Not-Before, else Upstash-Delay, else now.

    Each refusal names the header the caller sent.
    """
    not_before = now_ms
    nb_seconds = _int_header(view, headers.NOT_BEFORE)
    if nb_seconds is not None:
        not_before = max(now_ms, nb_seconds * 1000)
        if not_before - now_ms > defaults.MAX_DELAY_MS:
            raise ApiError(
                f"invalid Upstash-Not-Before header: {nb_seconds} (Unix seconds) is more than "
                f"the maximum delay of {_MAX_DELAY_DAYS} days ahead"
            )
    elif (delay := view.get(headers.DELAY)) is not None:
        try:
            delay_ms = parse_duration_ms(delay)
        except ValueError as exc:
            raise ApiError(f"invalid Upstash-Delay header: {exc}") from None
        if delay_ms > defaults.MAX_DELAY_MS:
            raise ApiError(
                f"invalid Upstash-Delay header: {delay.strip()!r} is longer than the maximum "
                f"of {_MAX_DELAY_DAYS} days"
            )
        not_before = now_ms + delay_ms
    return not_before


def build_request(
    *,
    user: User,
    url: str,
    view: HeaderView,
    body: bytes,
    now_ms: int,
    limits: PublishLimits,
    caller_ip: str | None = None,
) -> PublishRequest:
    if len(body) > limits.max_body_bytes:
        raise PayloadTooLarge(f"message body is larger than {limits.max_body_bytes} bytes")
    method = (view.get(headers.METHOD) or "POST").strip().upper()
    if method not in _METHODS:
        raise ApiError(f"invalid Upstash-Method header: {method!r}")

    not_before = _not_before(view, now_ms)

    retries = _int_header(view, headers.RETRIES)
    if retries is None:
        retries = defaults.DEFAULT_RETRIES
    if not 0 <= retries <= defaults.MAX_RETRIES:
        raise ApiError(f"invalid Upstash-Retries header: must be 0..{defaults.MAX_RETRIES}")

    retry_expr = view.get(headers.RETRY_DELAY)
    if retry_expr is not None:
        try:
            parse_retry_delay(retry_expr)
        except InvalidRetryDelay as exc:
            raise ApiError(f"invalid Upstash-Retry-Delay header: {exc}") from None

    timeout_ms: int | None = None
    if (timeout := view.get(headers.TIMEOUT)) is not None:
        try:
            timeout_ms = parse_duration_ms(timeout)
        except ValueError as exc:
            raise ApiError(f"invalid Upstash-Timeout header: {exc}") from None
        if timeout_ms <= 0:
            raise ApiError("invalid Upstash-Timeout header: must be positive")
        timeout_ms = min(timeout_ms, defaults.DEFAULT_TIMEOUT_MS)

    forwarded = _forwarded(view)
    callbacks = parse_callbacks([(low, value) for low, _, value in view.items()])
    dedup_id = view.get(headers.DEDUP_ID)
    content_dedup = (view.get(headers.CONTENT_DEDUP) or "").strip().lower()
    if content_dedup not in ("", "true", "false"):
        raise ApiError("invalid Upstash-Content-Based-Deduplication header: use true or false")

    message = Message(
        message_id=ids.message_id(),
        user_id=user.user_id,
        url=url,
        created_at=now_ms,
        not_before=not_before,
        method=method,
        header=forwarded,
        body=body,
        max_retries=retries,
        retry_delay_expression=retry_expr,
        timeout_ms=timeout_ms,
        callback=callbacks.callback,
        failure_callback=callbacks.failure_callback,
        callback_options=callbacks.callback_options,
        failure_callback_options=callbacks.failure_callback_options,
        dedup_id=dedup_id,
        labels=parse_labels(view.get(headers.LABEL)),
        caller_ip=caller_ip,
        redact=_redact_fields(view),
        flow_control=parse_flow_control(
            view.get(headers.FLOW_CONTROL_KEY), view.get(headers.FLOW_CONTROL_VALUE)
        ),
        workflow=parse_workflow(view.get, headers.WORKFLOW_PREFIX),
    )
    return _request_of(message, user=user, view=view, url=url, body=body, forwarded=forwarded)


def _request_of(
    message: Message,
    *,
    user: User,
    view: HeaderView,
    url: str,
    body: bytes,
    forwarded: dict[str, list[str]],
) -> PublishRequest:
    if message.workflow is not None:
        # The run's stream worker deduplicates on the run id; a start waits for its decision
        # (a second trigger of one run id answers "deduplicated").
        invoker: Invoker | None = None
        init = message.workflow.init
        if init and (view.get(headers.WORKFLOW_INVOKE) or "") == "true":
            message, invoker = _invoked(message, user=user, limits=PublishLimits())
        return PublishRequest(
            request_id=ids.request_id(), message=message, reply=init, invoker=invoker
        )
    dedup_id = message.dedup_id
    content_dedup = (view.get(headers.CONTENT_DEDUP) or "").strip().lower()
    dedup_key: str | None = None
    if dedup_id:
        dedup_key = f"{user.user_id}:id:{dedup_id}"
    elif content_dedup == "true":
        dedup_key = f"{user.user_id}:content:{content_hash(url, body, forwarded)}"
    return PublishRequest(
        request_id=ids.request_id(),
        message=message,
        dedup_key=dedup_key,
        reply=dedup_key is not None,
    )


class _InvokeBody(msgspec.Struct, rename="camel"):
    body: str
    workflow_run_id: str
    workflow_url: str
    step: dict[str, object]
    headers: dict[str, list[str]] = {}
    workflow_run_created_at: int = 0


def _invoked(message: Message, *, user: User, limits: PublishLimits) -> tuple[Message, Invoker]:
    """A run started by ``context.invoke``: its payload is the wrapper's ``body``; the
    invoker's step message, for the result, is built from the wrapper's headers."""
    try:
        wrapper = msgspec.json.decode(message.body, type=_InvokeBody)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ApiError(f"invalid invoke body: {exc}") from None
    pairs = [(k, v) for k, values in wrapper.headers.items() for v in values]
    template = build_request(
        user=user,
        url=wrapper.workflow_url,
        view=HeaderView(pairs),
        body=b"",
        now_ms=message.created_at,
        limits=limits,
    ).message
    if template.workflow is None or template.workflow.run_id != wrapper.workflow_run_id:
        raise ApiError("invalid invoke body: its headers must name the invoking run")
    invoker = Invoker(
        run_id=wrapper.workflow_run_id,
        url=wrapper.workflow_url,
        created_at=wrapper.workflow_run_created_at,
        step=msgspec.json.encode(wrapper.step),
        template=template,
    )
    return msgspec.structs.replace(message, body=wrapper.body.encode()), invoker


def content_hash(url: str, body: bytes, forwarded: dict[str, list[str]]) -> str:
    """Hash of destination, body, Content-Type and forwarded headers (QStash's content dedup)."""
    h = hashlib.sha256()
    for part in (url.encode(), body):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    for name in sorted(forwarded):
        for value in forwarded[name]:
            h.update(f"\n{name}:{value}".encode())
    return h.hexdigest()
