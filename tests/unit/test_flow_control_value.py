"""Upstash-Flow-Control-Key / -Value parsing (qstash-api.md §4) and the Message JSON fields."""

import pytest

from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.flow_control_value import parse_flow_control
from kafstash.producers.api.publish import HeaderView, PublishLimits, build_request
from kafstash.producers.api.views import message_json
from kafstash.schemas.message import FlowControl
from kafstash.schemas.users import DEV_USERS


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (
            "parallelism=2, rate=5, period=1m",
            FlowControl(key="k", parallelism=2, rate=5, period=60),
        ),
        ("parallelism=2,rate=5", FlowControl(key="k", parallelism=2, rate=5, period=1)),
        ("rate=10", FlowControl(key="k", rate=10)),
        ("period=1h30m3s", FlowControl(key="k", period=5403)),
        ("period=120", FlowControl(key="k", period=120)),
        ("period=7d", FlowControl(key="k", period=604_800)),
        (" Parallelism = 3 ", FlowControl(key="k", parallelism=3)),
    ],
)
def test_values(value: str, want: FlowControl) -> None:
    assert parse_flow_control("k", value) == want


def test_absent_headers_mean_no_flow_control() -> None:
    assert parse_flow_control(None, None) is None


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("k", None, "Upstash-Flow-Control-Value is required"),
        ("k", "  ", "Upstash-Flow-Control-Value is required"),
        (None, "rate=1", "Upstash-Flow-Control-Key is required"),
        ("", "rate=1", "Upstash-Flow-Control-Key is required"),
        ("a/b", "rate=1", "invalid Upstash-Flow-Control-Key"),
        ("k", "speed=3", "invalid Upstash-Flow-Control-Value"),
        ("k", "rate", "invalid Upstash-Flow-Control-Value"),
        ("k", "rate=", "invalid Upstash-Flow-Control-Value"),
        ("k", "rate=1,rate=2", "invalid Upstash-Flow-Control-Value"),
        ("k", "rate=0", "rate must be a positive integer"),
        ("k", "parallelism=-1", "parallelism must be a positive integer"),
        ("k", "parallelism=1.5", "parallelism must be a positive integer"),
        ("k", "period=8d", "period must be 1s..1 week"),
        ("k", "period=500ms", "period must be 1s..1 week"),
        ("k", "period=soon", "period"),
    ],
)
def test_bad_values_are_400(key: str | None, value: str | None, needle: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse_flow_control(key, value)
    assert exc.value.status == 400
    assert needle in str(exc.value)


def test_publish_headers_to_message_and_json() -> None:
    req = build_request(
        user=DEV_USERS[0],
        url="https://example.com/",
        view=HeaderView(
            [
                ("Upstash-Flow-Control-Key", "fk"),
                ("Upstash-Flow-Control-Value", "parallelism=2, period=1m"),
            ]
        ),
        body=b"",
        now_ms=1,
        limits=PublishLimits(),
    )
    assert req.message.flow_control == FlowControl(key="fk", parallelism=2, period=60)
    out = message_json(req.message)
    assert (out["flowControlKey"], out["parallelism"], out["period"]) == ("fk", 2, 60)
    assert "rate" not in out  # omitted when not set


def test_message_without_flow_control_has_no_key() -> None:
    req = build_request(
        user=DEV_USERS[0],
        url="https://example.com/",
        view=HeaderView([]),
        body=b"",
        now_ms=1,
        limits=PublishLimits(),
    )
    assert "flowControlKey" not in message_json(req.message)
