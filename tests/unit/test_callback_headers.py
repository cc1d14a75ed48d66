"""``Upstash-Callback-*`` / ``Upstash-Failure-Callback-*`` in both SDK dialects (qstash-api.md
§4 "How each SDK turns user headers into prefixed headers", §6 "Header mapping used by workflow").
"""

import pytest

from kafstash.producers.api.callbacks import parse_callbacks
from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.publish import HeaderView, PublishLimits, build_request
from kafstash.producers.api.views import message_json
from kafstash.schemas.message import CallbackOptions
from kafstash.schemas.users import DEV_USERS

NOW = 1_700_000_000_000
CB = "https://cb.example.com/hook"
FCB = "https://fcb.example.com/hook"


def pairs(headers: dict[str, str]) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in headers.items()]


def test_js_dialect_forward_headers_and_options() -> None:
    # JS passes the user's headers through as written (lower-cased by fetch).
    got = parse_callbacks(
        pairs(
            {
                "upstash-callback": CB,
                "upstash-callback-forward-x-token": "t",
                "upstash-callback-method": "put",
                "upstash-callback-retries": "5",
                "upstash-callback-retry-delay": "1000 * retried",
                "upstash-callback-timeout": "30s",
                "upstash-callback-delay": "10s",
                "upstash-failure-callback": FCB,
                "upstash-failure-callback-forward-y": "y",
            }
        )
    )
    assert got.callback == CB
    assert got.callback_options == CallbackOptions(
        method="PUT",
        header={"X-Token": ["t"]},
        retries=5,
        retry_delay_expression="1000 * retried",
        timeout_ms=30_000,
        delay_ms=10_000,
    )
    assert got.failure_callback == FCB
    assert got.failure_callback_options == CallbackOptions(header={"Y": ["y"]})


def test_python_dialect_bare_names_are_forwarded_headers() -> None:
    # PY-sdk: callback_headers={"cb": "1"} becomes Upstash-Callback-cb: 1 (WIRE).
    got = parse_callbacks(
        pairs(
            {
                "Upstash-Callback": CB,
                "Upstash-Callback-cb": "1",
                "Upstash-Failure-Callback": FCB,
                "Upstash-Failure-Callback-Forward-Z": "z",
                "Upstash-Failure-Callback-My-Header": "m",
            }
        )
    )
    assert got.callback_options is not None
    assert got.callback_options.header == {"Cb": ["1"]}
    assert got.failure_callback_options is not None
    assert got.failure_callback_options.header == {"Z": ["z"], "My-Header": ["m"]}


def test_workflow_headers_become_upstash_workflow_headers() -> None:
    got = parse_callbacks(
        pairs(
            {
                "Upstash-Callback": CB,
                "Upstash-Callback-Workflow-RunId": "wfr_1",
                "Upstash-Callback-Forward-Upstash-Workflow-Callback": "true",
            }
        )
    )
    assert got.callback_options is not None
    assert got.callback_options.header == {
        "Upstash-Workflow-Runid": ["wfr_1"],
        "Upstash-Workflow-Callback": ["true"],
    }


def test_options_without_a_url_configure_nothing() -> None:
    got = parse_callbacks(pairs({"Upstash-Callback-Retries": "2", "Upstash-Callback-cb": "1"}))
    assert got.callback is None
    assert got.callback_options is None


def test_the_two_prefixes_do_not_mix() -> None:
    got = parse_callbacks(pairs({"Upstash-Callback": CB, "Upstash-Failure-Callback-Retries": "1"}))
    assert got.callback_options == CallbackOptions()
    assert got.failure_callback is None


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({"Upstash-Callback": "cb.example.com"}, "Upstash-Callback header"),
        ({"Upstash-Callback": "ftp://x"}, "Upstash-Callback header"),
        ({"Upstash-Failure-Callback": "/relative"}, "Upstash-Failure-Callback header"),
        ({"Upstash-Callback": CB, "Upstash-Callback-Retries": "many"}, "Retries"),
        ({"Upstash-Callback": CB, "Upstash-Callback-Retries": "999"}, "Retries"),
        ({"Upstash-Callback": CB, "Upstash-Callback-Method": "FETCH"}, "Method"),
        ({"Upstash-Callback": CB, "Upstash-Callback-Timeout": "soon"}, "Timeout"),
        ({"Upstash-Callback": CB, "Upstash-Callback-Timeout": "0s"}, "Timeout"),
        ({"Upstash-Callback": CB, "Upstash-Callback-Delay": "400d"}, "Delay"),
        ({"Upstash-Callback": CB, "Upstash-Callback-Retry-Delay": "import os"}, "Retry-Delay"),
        ({"Upstash-Failure-Callback": FCB, "Upstash-Failure-Callback-Retries": "-1"}, "Retries"),
    ],
)
def test_bad_values_are_400_naming_the_header(headers: dict[str, str], needle: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_callbacks(pairs(headers))
    assert info.value.status == 400
    assert needle in str(info.value)


def test_publish_stores_options_and_message_json_shows_the_headers() -> None:
    req = build_request(
        user=DEV_USERS[0],
        url="https://example.com/",
        view=HeaderView(
            [
                ("Upstash-Callback", CB),
                ("Upstash-Callback-cb", "1"),
                ("Upstash-Failure-Callback", FCB),
                ("Upstash-Failure-Callback-Forward-Z", "z"),
            ]
        ),
        body=b"x",
        now_ms=NOW,
        limits=PublishLimits(),
    )
    m = req.message
    assert (m.callback, m.failure_callback) == (CB, FCB)
    assert m.header == {}  # callback headers are not the destination's
    shown = message_json(m)
    assert shown["callback"] == CB
    assert shown["callbackHeader"] == {"Cb": ["1"]}
    assert shown["failureCallbackHeader"] == {"Z": ["z"]}
