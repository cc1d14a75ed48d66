"""KAFSTASH_LOG_FORMAT=json: one object per line, the whitelisted fields only, secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import pytest

from kafstash.config import ConfigError
from kafstash.log_format import JsonFormatter, Scrubber, formatter, log_format

TOKEN = "eyJVc2VySUQiOiJjYW5hcnkifQ=="
KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW9mLWp3dA"


def _lines(emit: object, fmt: logging.Formatter) -> list[dict[str, object]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(fmt)
    log = logging.getLogger("kafstash.test.logformat")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        emit(log)  # type: ignore[operator]
    finally:
        log.removeHandler(handler)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_object_with_the_standard_fields_and_the_ids() -> None:
    [line] = _lines(
        lambda log: log.warning(
            "message %s failed",
            "msg_1",
            extra={"message_id": "msg_1", "schedule_id": "scd_2", "body": "user data"},
        ),
        JsonFormatter("sender"),
    )
    assert set(line) == {
        "timestamp",
        "level",
        "role",
        "logger",
        "message",
        "message_id",
        "schedule_id",
    }
    assert line["level"] == "WARNING"
    assert line["role"] == "sender"
    assert line["logger"] == "kafstash.test.logformat"
    assert line["message"] == "message msg_1 failed"
    assert line["message_id"] == "msg_1"
    assert line["schedule_id"] == "scd_2"
    assert datetime.fromisoformat(str(line["timestamp"])).utcoffset() is not None


def test_tokens_keys_signatures_and_bearer_credentials_are_scrubbed() -> None:
    def emit(log: logging.Logger) -> None:
        log.info("token %s key %s", TOKEN, KEY)
        log.info("Upstash-Signature: %s", JWT)
        log.info("Authorization: Bearer hunter2-secret-value")
        log.info("rotated to sig_%s", "5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs")
        try:
            raise ValueError(f"bad token {TOKEN}")
        except ValueError:
            log.exception("failed with %s", JWT)

    lines = _lines(emit, JsonFormatter("api", secrets=[TOKEN]))
    text = json.dumps(lines)
    for secret in (TOKEN, KEY, JWT, "hunter2", "5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs", "c2lnbmF0dXJl"):
        assert secret not in text
    assert "[redacted]" in str(lines[0]["message"])
    assert "ValueError" in str(lines[-1]["exception"])
    assert len(lines) == 5


def test_the_scrubber_leaves_ordinary_text_alone() -> None:
    scrub = Scrubber(["short", "a-long-known-secret"])
    text = "message msg_2Mz delivered to https://example.com/x after 3 retries (short)"
    assert scrub(text) == text  # secrets under 8 characters are not searched for
    assert scrub("x a-long-known-secret y") == "x [redacted] y"


def test_the_format_is_plain_unless_asked() -> None:
    assert log_format({}) == "plain"
    assert log_format({"KAFSTASH_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ConfigError, match="KAFSTASH_LOG_FORMAT"):
        log_format({"KAFSTASH_LOG_FORMAT": "xml"})
    assert not isinstance(formatter("plain", "api"), JsonFormatter)
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "hi", None, None)
    assert formatter("plain", "api").format(record).endswith("INFO    n: hi")
