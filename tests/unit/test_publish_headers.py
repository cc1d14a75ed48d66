"""Publish: Upstash-* headers → PublishRequest, the raw destination, and duration strings.

qstash-api.md §3.1 (the destination travels raw in the path) and §4 (request headers).
"""

import pytest

from kafstash.producers.api.destination import rebuild, validate_url
from kafstash.producers.api.errors import ApiError, PayloadTooLarge
from kafstash.producers.api.publish import HeaderView, PublishLimits, build_request
from kafstash.producers.durations import parse_duration_ms
from kafstash.schemas import defaults
from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.users import DEV_USERS

NOW = 1_700_000_000_000
USER = DEV_USERS[0]
URL = "https://example.com/api/hook"


def publish(
    headers: list[tuple[str, str]] | None = None,
    *,
    body: bytes = b'{"hello":"world"}',
    url: str = URL,
) -> PublishRequest:
    return build_request(
        user=USER,
        url=url,
        view=HeaderView(headers or []),
        body=body,
        now_ms=NOW,
        limits=PublishLimits(),
        caller_ip="203.0.113.7",
    )


def rejected(headers: list[tuple[str, str]], *, body: bytes = b"x") -> ApiError:
    with pytest.raises(ApiError) as info:
        publish(headers, body=body)
    return info.value


# --- the message ---------------------------------------------------------------------------


def test_plain_publish_uses_the_defaults() -> None:
    req = publish()
    msg = req.message

    assert req.request_id.startswith("req_")
    assert msg.message_id.startswith("msg_")
    assert msg.user_id == "defaultUser"
    assert msg.url == URL
    assert msg.created_at == NOW
    assert msg.not_before == NOW
    assert msg.method == "POST"
    assert msg.header == {}
    assert msg.body == b'{"hello":"world"}'
    assert msg.max_retries == 3
    assert msg.retry_delay_expression is None
    assert msg.timeout_ms is None
    assert msg.labels == []
    assert msg.caller_ip == "203.0.113.7"
    assert req.dedup_key is None
    assert req.reply is False


def test_every_publish_gets_fresh_ids() -> None:
    a, b = publish(), publish()

    assert a.message.message_id != b.message.message_id
    assert a.request_id != b.request_id


# --- forwarded headers ---------------------------------------------------------------------


def test_forward_prefix_is_stripped_and_names_go_canonical() -> None:
    req = publish(
        [
            ("upstash-forward-x-my-header", "one"),
            ("Upstash-Forward-X-MY-HEADER", "two"),
            ("UPSTASH-FORWARD-authorization", "Bearer dest-token"),
            ("Upstash-Forward-Upstash-Workflow-Runid", "wfr_1"),
        ]
    )

    assert req.message.header == {
        "X-My-Header": ["one", "two"],
        "Authorization": ["Bearer dest-token"],
        "Upstash-Workflow-Runid": ["wfr_1"],
    }


def test_direct_content_type_is_forwarded() -> None:
    req = publish([("Content-Type", "text/plain;charset=UTF-8")])

    assert req.message.header == {"Content-Type": ["text/plain;charset=UTF-8"]}


def test_forwarded_content_type_alone_is_the_content_type() -> None:
    # The Python SDK prefixes every user header, Content-Type included.
    req = publish([("Upstash-Forward-Content-Type", "application/xml")])

    assert req.message.header == {"Content-Type": ["application/xml"]}


@pytest.mark.parametrize(
    "headers",
    [
        [("Content-Type", "text/plain"), ("Upstash-Forward-Content-Type", "application/json")],
        [("Upstash-Forward-Content-Type", "application/json"), ("Content-Type", "text/plain")],
    ],
    ids=["direct first", "forwarded first"],
)
def test_forwarded_content_type_beats_the_direct_one(headers: list[tuple[str, str]]) -> None:
    assert publish(headers).message.header == {"Content-Type": ["application/json"]}


def test_unprefixed_and_telemetry_headers_are_not_forwarded() -> None:
    req = publish(
        [
            ("Authorization", "Bearer qstash-token"),
            ("Accept", "application/json"),
            ("User-Agent", "node"),
            ("Upstash-Telemetry-Sdk", "upstash-qstash-js@2.12.0"),
            ("Upstash-Telemetry-Runtime", "node@v20.11.0"),
            ("Upstash-Telemetry-Platform", "vercel"),
            ("Upstash-Retries", "2"),
            ("Upstash-Forward-X-Kept", "yes"),
        ]
    )

    assert req.message.header == {"X-Kept": ["yes"]}


@pytest.mark.parametrize(
    "name",
    [
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "TE",
        "Upgrade",
        "Host",
        "Content-Length",
        "Proxy-Authorization",
    ],
)
def test_hop_by_hop_headers_are_never_forwarded(name: str) -> None:
    req = publish([(f"Upstash-Forward-{name}", "x"), ("Upstash-Forward-X-Ok", "1")])

    assert req.message.header == {"X-Ok": ["1"]}


def test_forward_prefix_with_empty_name_is_ignored() -> None:
    assert publish([("Upstash-Forward-", "x")]).message.header == {}


# --- method --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "method"),
    [("GET", "GET"), ("put", "PUT"), (" patch ", "PATCH"), ("DELETE", "DELETE"), ("", "POST")],
)
def test_method(raw: str, method: str) -> None:
    assert publish([("Upstash-Method", raw)]).message.method == method


@pytest.mark.parametrize("raw", ["FETCH", "GET POST", "CONNECT"])
def test_invalid_method_is_rejected(raw: str) -> None:
    err = rejected([("Upstash-Method", raw)])

    assert err.status == 400
    assert "Upstash-Method" in str(err)


# --- delay and not-before ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "delay_ms"),
    [
        ("10s", 10_000),
        ("1d10h30m", 86_400_000 + 10 * 3_600_000 + 30 * 60_000),
        ("500ms", 500),
        ("30", 30_000),  # a bare number is seconds
        ("5m", 300_000),
        ("0s", 0),
    ],
)
def test_delay(raw: str, delay_ms: int) -> None:
    assert publish([("Upstash-Delay", raw)]).message.not_before == NOW + delay_ms


@pytest.mark.parametrize("raw", ["10x", "", "1s1s", "-5s", "1.5s", "s"])
def test_invalid_delay_is_rejected(raw: str) -> None:
    err = rejected([("Upstash-Delay", raw)])

    assert err.status == 400
    assert "Upstash-Delay" in str(err)


@pytest.mark.parametrize("raw", ["10x", "", "1s1s", "-5s", "-5", "1.5s", "s", "9" * 70 + "s"])
def test_every_invalid_delay_says_how_to_write_one(raw: str) -> None:
    message = str(rejected([("Upstash-Delay", raw)]))

    assert message.startswith("invalid Upstash-Delay header: invalid duration")
    assert "use forms like 10s, 5m, 1d10h30m, 500ms" in message


def test_a_negative_delay_is_named_as_such() -> None:
    assert "cannot be negative" in str(rejected([("Upstash-Delay", "-5s")]))


def test_delay_longer_than_a_year_is_rejected() -> None:
    err = rejected([("Upstash-Delay", "366d")])

    assert err.status == 400
    assert str(err) == "invalid Upstash-Delay header: '366d' is longer than the maximum of 365 days"
    assert publish([("Upstash-Delay", "365d")]).message.not_before == NOW + defaults.MAX_DELAY_MS


def test_not_before_further_than_a_year_names_that_header() -> None:
    far = NOW // 1000 + 366 * 86_400
    err = rejected([("Upstash-Not-Before", str(far))])

    assert err.status == 400
    assert str(err).startswith(f"invalid Upstash-Not-Before header: {far} (Unix seconds)")
    assert "delay is" not in str(err)
    assert "Upstash-Delay" not in str(err)
    at_limit = publish([("Upstash-Not-Before", str(NOW // 1000 + 365 * 86_400))])
    assert at_limit.message.not_before == NOW + defaults.MAX_DELAY_MS


def test_a_huge_not_before_is_refused_not_overflowed() -> None:
    assert rejected([("Upstash-Not-Before", "9" * 40)]).status == 400


def test_not_before_is_in_seconds() -> None:
    req = publish([("Upstash-Not-Before", str(NOW // 1000 + 90))])

    assert req.message.not_before == NOW + 90_000


def test_not_before_overrides_delay() -> None:
    req = publish([("Upstash-Delay", "10s"), ("Upstash-Not-Before", str(NOW // 1000 + 3600))])

    assert req.message.not_before == NOW + 3_600_000


def test_not_before_in_the_past_means_now() -> None:
    assert publish([("Upstash-Not-Before", "1000")]).message.not_before == NOW


def test_invalid_not_before_is_rejected() -> None:
    err = rejected([("Upstash-Not-Before", "tomorrow")])

    assert err.status == 400
    assert "Upstash-Not-Before" in str(err)


# --- retries, retry delay, timeout ---------------------------------------------------------


@pytest.mark.parametrize(("raw", "retries"), [("0", 0), ("5", 5), ("20", 20), (" 2 ", 2)])
def test_retries(raw: str, retries: int) -> None:
    assert publish([("Upstash-Retries", raw)]).message.max_retries == retries


@pytest.mark.parametrize("raw", ["21", "-1", "abc", ""])
def test_invalid_retries_are_rejected(raw: str) -> None:
    err = rejected([("Upstash-Retries", raw)])

    assert err.status == 400
    assert "Upstash-Retries" in str(err)


def test_valid_retry_delay_expression_is_kept_as_sent() -> None:
    expr = "pow(2, retried) * 1000"

    assert publish([("Upstash-Retry-Delay", expr)]).message.retry_delay_expression == expr


@pytest.mark.parametrize("raw", ["retried +", "__import__('os')", "foo(1)", ""])
def test_invalid_retry_delay_expression_is_rejected(raw: str) -> None:
    err = rejected([("Upstash-Retry-Delay", raw)])

    assert err.status == 400
    assert "Upstash-Retry-Delay" in str(err)


@pytest.mark.parametrize(("raw", "ms"), [("30s", 30_000), ("2m", 120_000), ("45", 45_000)])
def test_timeout(raw: str, ms: int) -> None:
    assert publish([("Upstash-Timeout", raw)]).message.timeout_ms == ms


def test_timeout_is_capped_at_the_maximum_response_time() -> None:
    assert publish([("Upstash-Timeout", "2h")]).message.timeout_ms == defaults.DEFAULT_TIMEOUT_MS


@pytest.mark.parametrize("raw", ["0s", "fast", ""])
def test_invalid_timeout_is_rejected(raw: str) -> None:
    err = rejected([("Upstash-Timeout", raw)])

    assert err.status == 400
    assert "Upstash-Timeout" in str(err)


# --- deduplication -------------------------------------------------------------------------


def test_deduplication_id_gives_a_per_user_key_and_asks_for_the_decision() -> None:
    req = publish([("Upstash-Deduplication-Id", "order-42")])

    assert req.dedup_key == "defaultUser:id:order-42"
    assert req.reply is True
    assert req.message.dedup_id == "order-42"


def test_the_same_deduplication_id_of_another_user_is_another_key() -> None:
    other = build_request(
        user=DEV_USERS[1],
        url=URL,
        view=HeaderView([("Upstash-Deduplication-Id", "order-42")]),
        body=b"",
        now_ms=NOW,
        limits=PublishLimits(),
    )

    assert other.dedup_key == "testUser1:id:order-42"


def _content_key(headers: list[tuple[str, str]], body: bytes = b"same body") -> str | None:
    return publish(headers, body=body).dedup_key


@pytest.mark.parametrize("flag", ["True", "true", " TRUE "])
def test_content_based_dedup_key(flag: str) -> None:
    headers = [("Upstash-Content-Based-Deduplication", flag), ("Content-Type", "text/plain")]

    key = _content_key(headers)

    assert key is not None
    assert key.startswith("defaultUser:content:")
    assert key == _content_key(headers)  # same content, same key
    assert publish(headers).reply is True


def test_content_based_dedup_key_covers_body_headers_and_destination() -> None:
    flag = ("Upstash-Content-Based-Deduplication", "true")
    base = _content_key([flag, ("Upstash-Forward-X-A", "1")])

    assert base != _content_key([flag, ("Upstash-Forward-X-A", "1")], body=b"other body")
    assert base != _content_key([flag, ("Upstash-Forward-X-A", "2")])
    assert base != _content_key([flag, ("Upstash-Forward-X-A", "1"), ("Content-Type", "a/b")])
    assert base != publish([flag, ("Upstash-Forward-X-A", "1")], url=URL + "/v2").dedup_key


def test_content_based_dedup_key_ignores_what_is_not_delivered() -> None:
    flag = ("Upstash-Content-Based-Deduplication", "true")
    base = _content_key([flag])

    assert base == _content_key([flag, ("Upstash-Telemetry-Sdk", "upstash-qstash-js@2.12.0")])
    assert base == _content_key([flag, ("Authorization", "Bearer other")])
    assert base == _content_key([flag, ("Upstash-Retries", "1")])


@pytest.mark.parametrize("flag", ["false", "False", ""])
def test_content_based_dedup_off(flag: str) -> None:
    req = publish([("Upstash-Content-Based-Deduplication", flag)])

    assert req.dedup_key is None
    assert req.reply is False


def test_content_based_dedup_rejects_other_values() -> None:
    err = rejected([("Upstash-Content-Based-Deduplication", "maybe")])

    assert err.status == 400
    assert "Upstash-Content-Based-Deduplication" in str(err)


def test_deduplication_id_wins_over_content_based_dedup() -> None:
    req = publish(
        [("Upstash-Content-Based-Deduplication", "true"), ("Upstash-Deduplication-Id", "d1")]
    )

    assert req.dedup_key == "defaultUser:id:d1"


# --- labels, body size, header case --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "labels"),
    [("a, b", ["a", "b"]), ("L1,L2", ["L1", "L2"]), ("solo", ["solo"]), (" , ,", [])],
)
def test_labels(raw: str, labels: list[str]) -> None:
    assert publish([("Upstash-Label", raw)]).message.labels == labels


def test_body_at_the_limit_is_accepted() -> None:
    body = b"\x00" * defaults.MAX_BODY_BYTES

    assert publish(body=body).message.body == body


def test_body_over_the_limit_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        publish(body=b"\x00" * (defaults.MAX_BODY_BYTES + 1))

    assert info.value.status == 413


def test_header_names_are_case_insensitive() -> None:
    req = publish(
        [
            ("UPSTASH-DELAY", "10s"),
            ("upstash-retries", "1"),
            ("Upstash-METHOD", "put"),
            ("upstash-label", "x"),
        ]
    )

    assert req.message.not_before == NOW + 10_000
    assert req.message.max_retries == 1
    assert req.message.method == "PUT"
    assert req.message.labels == ["x"]


def test_the_first_of_repeated_headers_wins_whatever_its_case() -> None:
    req = publish([("UPSTASH-DELAY", "10s"), ("upstash-delay", "20s")])

    assert req.message.not_before == NOW + 10_000


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("10s", 10_000),
        ("1d10h30m", 124_200_000),
        ("1h30m3s", 5_403_000),
        ("500ms", 500),
        ("1m500ms", 60_500),
        ("30", 30_000),
        (" 7d ", 604_800_000),
    ],
)
def test_parse_duration_ms(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(
    "text", ["10x", "", "   ", "1s1s", "s10", "10 s", "1.5h", "9" * 70 + "s", "-5s", "5s-"]
)
def test_parse_duration_ms_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .*: .*use forms like 10s, 5m"):
        parse_duration_ms(text)


# --- destination: rebuilt from the raw path ------------------------------------------------

PREFIX = "/v2/publish/"


def test_rebuild_appends_the_raw_query() -> None:
    dest = rebuild(b"/v2/publish/https://example.com/api/hook", PREFIX, b"x=1&y=2")

    assert dest == "https://example.com/api/hook?x=1&y=2"


def test_rebuild_without_query() -> None:
    assert rebuild(b"/v2/publish/http://example.com/p", PREFIX, b"") == "http://example.com/p"


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_rebuild_repairs_a_collapsed_scheme_slash(scheme: str) -> None:
    raw = f"/v2/publish/{scheme}:/example.com/x".encode()

    assert rebuild(raw, PREFIX, b"") == f"{scheme}://example.com/x"


def test_rebuild_decodes_a_percent_encoded_destination() -> None:
    raw = b"/v2/publish/https%3A%2F%2Fexample.com%2Fp"

    assert rebuild(raw, PREFIX, b"") == "https://example.com/p"
    assert rebuild(raw.lower(), PREFIX, b"") == "https://example.com/p"


def test_rebuild_joins_an_encoded_query_with_the_raw_one() -> None:
    raw = b"/v2/publish/https%3A%2F%2Fexample.com%2Fp%3Fa%3D1"

    assert rebuild(raw, PREFIX, b"b=2") == "https://example.com/p?a=1&b=2"


def test_rebuild_keeps_a_plain_destination_raw() -> None:
    # Already a URL: its own escapes travel unchanged (§3.1).
    raw = b"/v2/publish/https://example.com/a%20b/c%3Ad"

    assert rebuild(raw, PREFIX, b"") == "https://example.com/a%20b/c%3Ad"


def test_rebuild_keeps_the_trailing_slash() -> None:
    assert rebuild(b"/v2/publish/https://example.com/", PREFIX, b"") == "https://example.com/"
    assert rebuild(b"/v2/publish/https://e.com/a/", PREFIX, b"q=1") == "https://e.com/a/?q=1"


def test_rebuild_ignores_a_query_left_in_the_raw_path() -> None:
    raw = b"/v2/publish/https://example.com/p?dup=1"

    assert rebuild(raw, PREFIX, b"dup=1") == "https://example.com/p?dup=1"


# --- destination: validated ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/file",
        "file:///etc/passwd",
        "http://user:pw@h/",
        "http://user@h/",
        "http://exa mple.com/",
        "http://example.com/\x00",
        "http://example.com/\r\nX-Injected: 1",
        "http://example.com/\x7f",
        "http:///no-host",
        "http://example.com:99999/",
        "https://example.com/" + "a" * 2048,
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_invalid_destinations_are_rejected(url: str, allow_private: bool) -> None:
    with pytest.raises(ApiError) as info:
        validate_url(url, allow_private=allow_private)

    assert info.value.status == 400
    assert str(info.value).startswith("invalid destination url")


PRIVATE = [
    "http://127.0.0.1:9/x",
    "http://10.0.0.1/",
    "http://192.168.1.10/",
    "http://169.254.169.254/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_private_destinations_are_refused_by_default(url: str) -> None:
    with pytest.raises(ApiError) as info:
        validate_url(url, allow_private=False)

    assert info.value.status == 400
    assert "private or loopback" in str(info.value)


@pytest.mark.parametrize("url", PRIVATE)
def test_private_destinations_are_allowed_when_configured(url: str) -> None:
    assert validate_url(url, allow_private=True) == url


@pytest.mark.parametrize(
    "url", ["http://93.184.216.34/hook", "https://[2606:4700:4700::1111]:8443/p?x=1"]
)
def test_public_ip_literals_are_accepted(url: str) -> None:
    assert validate_url(url, allow_private=False) == url
