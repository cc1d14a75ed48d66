"""Planted secrets never leave kafstash: not in any role's log, any topic, or the state on disk.

A stack (all four roles) runs with a canary user (its token and both signing keys are unique
random strings), publishes through every path a token can arrive by (header, ``?qstash_token=``,
batch) and a schedule, delivers successes, retries and dead letters, then searches every role's
log, every record of every topic of the stack and every file under its home (the Iceberg archive
too) for the token, the signing keys and every JWT seen at the sink. A forwarded
``Authorization`` header is user data and *is* stored: finding it in the topics proves the search
reads what it claims to.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import msgspec
import pytest

from kafstash.schemas.users import User
from tests.security.helpers import RecordingSink, read_topics, wait_until
from tests.stack import Stack

pytestmark = pytest.mark.broker


def _canary(tag: str) -> str:
    return f"canary{tag}{uuid.uuid4().hex}"


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_token_keys_and_signatures_are_never_logged_or_stored(
    kafka_bootstrap: str, tmp_path: Path, log_format: str
) -> None:
    user = User(
        user_id="canaryUser",
        token=_canary("token"),
        current_signing_key=f"sig_{_canary('current')}",
        next_signing_key=f"sig_{_canary('next')}",
    )
    forwarded_secret = _canary("forwarded")  # user data: expected in the message records
    stack = Stack(
        kafka_bootstrap,
        tmp_path,
        env={
            "KAFSTASH_USERS": msgspec.json.encode([user]).decode(),
            "KAFSTASH_LOG_FORMAT": log_format,
        },
    )
    stack.user = user
    sink = RecordingSink(current_key=user.current_signing_key, next_key=user.next_signing_key)
    stack.start()
    stack.start_role("archiver")
    sink.start()
    try:
        auth = {"Authorization": f"Bearer {user.token}"}
        with httpx.Client(base_url=stack.base_url, timeout=30) as http:
            sent = [
                http.post(
                    f"/v2/publish/{sink.url('/ok/secrets-header')}",
                    headers={**auth, "Upstash-Forward-Authorization": f"Bearer {forwarded_secret}"},
                    content=b"one",
                ),
                http.post(
                    f"/v2/publish/{sink.url('/fail/1/secrets-retry')}",
                    params={"qstash_token": user.token},
                    content=b"two",
                ),
                http.post(
                    f"/v2/publish/{sink.url('/status/500/secrets-dlq')}",
                    headers={**auth, "Upstash-Retries": "0"},
                    content=b"three",
                ),
                http.post(
                    "/v2/batch",
                    headers=auth,
                    json=[{"destination": sink.url("/ok/secrets-batch"), "body": "four"}],
                ),
            ]
            keys = http.get("/v2/keys", headers=auth)
            refused = http.get("/v2/keys", headers={"Authorization": f"Bearer {user.token}x"})
        assert [r.status_code for r in sent] == [201, 201, 201, 201], [r.text for r in sent]
        dead_letter = sent[2].json()["messageId"]
        assert keys.json() == {"current": user.current_signing_key, "next": user.next_signing_key}
        assert refused.status_code == 401

        sink.wait_count("/ok/secrets-header", 1, timeout=90)
        sink.wait_count("/fail/1/secrets-retry", 2, timeout=120)  # 500 then 200
        sink.wait_count("/status/500/secrets-dlq", 1, timeout=90)
        sink.wait_count("/ok/secrets-batch", 1, timeout=90)
        # A schedule's message fails for good too: its DLQ line names the schedule.
        with httpx.Client(base_url=stack.base_url, timeout=30) as http:
            r = http.post(
                f"/v2/schedules/{sink.url('/status/500/secrets-schedule')}",
                headers={**auth, "Upstash-Cron": "*/2 * * * * *", "Upstash-Retries": "0"},
                content=b"five",
            )
            assert r.status_code in (200, 201), r.text
            schedule_id = r.json()["scheduleId"]
            sink.wait_count("/status/500/secrets-schedule", 1, timeout=90)
            assert http.delete(f"/v2/schedules/{schedule_id}", headers=auth).status_code == 200
        receipts = sink.received("/")
        assert not [r.path for r in receipts if "qstash_token" in r.path]  # not sent on either
        assert all(r.signature_ok for r in receipts), [r.signature_error for r in receipts]
        signatures = [r.headers["Upstash-Signature"] for r in receipts]
        messages_topic = f"{stack.prefix}.messages"
        wait_until(  # the dead letter's end is recorded before we look
            "all messages finished",
            lambda: (
                sum(
                    1
                    for _k, v in read_topics(kafka_bootstrap, messages_topic)[messages_topic]
                    if not v
                )
                >= 5
            ),
            timeout=120,
        )
    finally:
        sink.stop()
        stack.stop()  # flushes and closes every log

    secrets = {
        "token": user.token,
        "current signing key": user.current_signing_key,
        "next signing key": user.next_signing_key,
    }
    for i, jwt in enumerate(signatures):
        secrets[f"signature {i}"] = jwt
        secrets[f"signature {i} (MAC part)"] = jwt.rsplit(".", 1)[1]

    topics = read_topics(kafka_bootstrap, stack.prefix)
    assert f"{stack.prefix}.events" in topics
    sources: dict[str, bytes] = {
        f"topic {name}": b"\n".join(k + b"\t" + v for k, v in records)
        for name, records in topics.items()
    }
    logs = sorted(tmp_path.glob("*.log"))
    assert {p.stem for p in logs} >= {"api", "streams", "sender", "archiver"}
    for path in sorted(p for p in tmp_path.rglob("*") if p.is_file()):
        sources[f"file {path.relative_to(tmp_path)}"] = path.read_bytes()

    # The search sees what it should: the forwarded header (user data) is in the records.
    stored = sources[f"topic {stack.prefix}.requests"]
    assert forwarded_secret.encode() in stored
    assert b"canaryUser" in stored

    hits = [
        f"{what} in {where}"
        for where, data in sources.items()
        for what, secret in secrets.items()
        if secret.encode() in data
    ]
    assert hits == [], "\n".join(hits)
    assert sum(len(p.read_bytes()) for p in logs) > 0
    # Message data (here a forwarded header, stored in the topics above) is never logged either.
    assert not [p.name for p in logs if forwarded_secret.encode() in p.read_bytes()]
    if log_format == "json":
        _assert_json_lines(logs, dead_letter=dead_letter, schedule_id=schedule_id)
    json.dumps(hits)  # hits stay printable for the report above


def _assert_json_lines(logs: list[Path], *, dead_letter: str, schedule_id: str) -> None:
    """Every line of every role's log is one JSON object naming its role; the dead letters'
    lines carry their message id, and the scheduled one its schedule id too."""
    entries: list[dict[str, object]] = []
    for path in logs:
        lines = path.read_text().splitlines()
        assert lines, f"{path.name} is empty: nothing checked"
        for line in lines:
            entry = json.loads(line)
            assert isinstance(entry, dict), line
            assert {"timestamp", "level", "role", "logger", "message"} <= set(entry), line
            assert entry["role"] == path.stem, line
            entries.append(entry)
    # The delivery that failed for good: the sender's line names the message.
    assert [e for e in entries if e.get("message_id") == dead_letter and e["role"] == "sender"], (
        "no sender line carried the dead letter's message id"
    )
    # A scheduled message's line names both its message and its schedule.
    scheduled = [e for e in entries if e.get("schedule_id") == schedule_id]
    assert scheduled, "no line carried the schedule id"
    assert all(str(e.get("message_id", "")).startswith("msg_") for e in scheduled), scheduled
