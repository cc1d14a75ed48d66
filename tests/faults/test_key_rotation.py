"""Issue #5 item 8: rotate the signing keys while messages are being delivered.

Messages are published continuously (~20/s for 6 s) and the keys are rotated after 2 s. A receiver
that holds the keys it had before the rotation (current + next, as QStash tells users to keep)
must see zero verification failures, before, during and after the rotation: the old next key
becomes current. Messages published once the senders had time to read the rotation (1.5 s) are
signed with the new current key, verified with that key alone.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pytest
from qstash import QStash, Receiver
from qstash.errors import SignatureError

from tests.jssdk import JsSdk
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

RATE = 20.0
PUBLISH_S = 6.0
ROTATE_AT_S = 2.0
SETTLE_S = 1.5  # the senders follow the keys topic; this is ample on a busy machine


def test_rotation_mid_run_never_fails_a_receiver_holding_the_old_keys(
    stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    client = QStash(stack.token, base_url=stack.base_url)
    path = route("ok")
    published: list[tuple[float, str]] = []  # (publish time, message id)
    rotated_at: float | None = None
    rotate_wall = 0.0
    rotated = None
    try:
        # Once a first message arrived the senders run: the run below starts with them warm.
        client.message.publish(url=sink.url(f"{path}?n=warmup"), body="warmup")
        sink.wait_count(path, 1, timeout=60)
        t0 = time.monotonic()
        n = 0
        while (now := time.monotonic()) - t0 < PUBLISH_S:
            if rotated is None and now - t0 >= ROTATE_AT_S:
                rotate_wall = time.time()
                rotated = client.signing_key.rotate()
                rotated_at = time.monotonic()
            res = client.message.publish(url=sink.url(f"{path}?n={n}"), body=f"m{n}")
            published.append((time.monotonic(), res.message_id))  # type: ignore[union-attr]
            n += 1
            time.sleep(max(0.0, t0 + n / RATE - time.monotonic()))
    finally:
        client.http._client.close()
    assert rotated is not None
    assert rotated_at is not None
    assert rotated.current == stack.user.next_signing_key

    receipts = sink.wait_for(
        path, lambda got: {r.message_id for r in got} >= {m for _, m in published}, timeout=90
    )
    # Zero failures with the pre-rotation keys (the sink's Python Receiver holds them) ...
    failures = [(r.path, r.signature_error) for r in receipts if not r.signature_ok]
    assert failures == []
    # ... and with the JS Receiver holding the same keys.
    verdicts = JsSdk(stack.base_url, stack.token).verify(
        stack.user.current_signing_key,
        stack.user.next_signing_key,
        [
            {
                "signature": r.headers["Upstash-Signature"],
                "bodyBase64": base64.b64encode(r.body).decode(),
                "url": sink.url(r.path),
            }
            for r in receipts
        ],
    )
    assert verdicts == [{"valid": True}] * len(receipts)

    # After the rotation settled, deliveries are signed with the new current key.
    late = {m for at, m in published if at >= rotated_at + SETTLE_S}
    assert len(late) >= 20
    new_only = Receiver(current_signing_key=rotated.current, next_signing_key=rotated.current)
    old_only = Receiver(
        current_signing_key=stack.user.current_signing_key,
        next_signing_key=stack.user.current_signing_key,
    )
    checked = 0
    for r in receipts:
        if r.message_id not in late:
            continue
        new_only.verify(
            signature=r.headers["Upstash-Signature"], body=r.body.decode(), url=sink.url(r.path)
        )
        with pytest.raises(SignatureError, match="decoding signature"):  # signed with another key
            old_only.verify(
                signature=r.headers["Upstash-Signature"], body=r.body.decode(), url=sink.url(r.path)
            )
        checked += 1
    assert checked >= len(late)
    # Requests received before the rotation was even asked for carry the old current key (a
    # request is signed when it is sent, so a message published earlier may carry the new one).
    early = [r for r in receipts if r.at < rotate_wall]
    assert len(early) > 1  # the warm-up message and the first of the run
    for r in early:
        old_only.verify(
            signature=r.headers["Upstash-Signature"], body=r.body.decode(), url=sink.url(r.path)
        )
