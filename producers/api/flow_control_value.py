"""``Upstash-Flow-Control-Key`` / ``-Value`` → the message's FlowControl (pure, no I/O).

The value is a comma list of ``parallelism=<n>``, ``rate=<n>``, ``period=<duration>`` (any
subset; the SDKs join with ``", "``, curl examples with ``","``). ``period`` defaults to 1 s and
is at most a week; a bare number is seconds, like every QStash duration.
"""

from kafstash.producers.api.errors import ApiError
from kafstash.producers.durations import parse_duration_ms
from kafstash.schemas.defaults import MAX_FLOW_CONTROL_PERIOD_S
from kafstash.schemas.message import FlowControl

_MAX_KEY = 256


def parse_flow_control(key: str | None, value: str | None) -> FlowControl | None:
    """The FlowControl the two headers ask for; ApiError (400) when they are malformed."""
    if key is None and value is None:
        return None
    key = (key or "").strip()
    if not key:
        raise ApiError("Upstash-Flow-Control-Key is required with Upstash-Flow-Control-Value")
    if len(key) > _MAX_KEY or "/" in key or any(ord(c) < 0x21 for c in key):
        raise ApiError("invalid Upstash-Flow-Control-Key header: use up to 256 visible characters")
    if value is None or not value.strip():
        raise ApiError("Upstash-Flow-Control-Value is required with Upstash-Flow-Control-Key")
    seen: dict[str, str] = {}
    for part in value.split(","):
        name, eq, raw = part.strip().partition("=")
        name, raw = name.strip().lower(), raw.strip()
        if not eq or name not in ("parallelism", "rate", "period") or not raw or name in seen:
            raise ApiError(
                f"invalid Upstash-Flow-Control-Value header: {part.strip()!r}; "
                "use parallelism=<n>, rate=<n>, period=<duration>"
            )
        seen[name] = raw
    return FlowControl(
        key=key,
        parallelism=_positive(seen, "parallelism"),
        rate=_positive(seen, "rate"),
        period=_period_s(seen.get("period")),
    )


def _positive(seen: dict[str, str], name: str) -> int | None:
    raw = seen.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(
            f"invalid Upstash-Flow-Control-Value header: {name} must be a positive integer"
        )
    return int(raw)


def _period_s(raw: str | None) -> int:
    if raw is None:
        return 1
    try:
        ms = parse_duration_ms(raw)
    except ValueError as exc:
        raise ApiError(f"invalid Upstash-Flow-Control-Value header: period: {exc}") from None
    if ms < 1000 or ms > MAX_FLOW_CONTROL_PERIOD_S * 1000:
        raise ApiError("invalid Upstash-Flow-Control-Value header: period must be 1s..1 week")
    return ms // 1000
