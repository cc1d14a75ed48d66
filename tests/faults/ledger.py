"""The publisher's ledger and the pass rule of reliability-notes §4.3.

Every publish attempt carries a unique nonce in its body (and in a forwarded header) and is
recorded as **acked** (2xx, with its message id), **rejected** (4xx) or **unknown** (5xx,
timeout, connection reset). The sink records every receipt. After a drain, ``check`` computes:

- ``lost`` = acked nonces never delivered with a 2xx answer → must be empty;
- ``unexpected`` = delivered nonces never attempted → must be empty;
- ``rejected_delivered`` = rejected nonces that were delivered → must be empty;
- ``recovered`` = unknown nonces that were delivered anyway (allowed, reported);
- ``duplicates`` = 2xx receipts beyond the first per nonce (allowed, bounded per scenario);
- ``early`` = receipts before the earliest possible not-before (send start + delay) → empty;
- ``corrupt`` = receipts whose body, forwarded header or message id differ from what was sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx

from tests.sink import Receipt, Sink

Outcome = Literal["acked", "rejected", "unknown"]
NONCE_HEADER = "X-Kafstash-Nonce"


def body_for(nonce: str) -> bytes:
    """A body that proves itself intact: the nonce and a digest of it."""
    digest = hashlib.sha256(nonce.encode()).hexdigest()
    return json.dumps({"nonce": nonce, "check": digest, "pad": digest * 4}).encode()


def nonce_of(body: bytes) -> str | None:
    """The nonce of an intact body, else None."""
    try:
        nonce = json.loads(body)["nonce"]
    except (ValueError, KeyError, TypeError):
        return None
    return nonce if isinstance(nonce, str) and body_for(nonce) == body else None


@dataclass
class Attempt:
    nonce: str
    outcome: Outcome
    status: int | None
    message_id: str | None
    t_start: float  # time.time() just before sending
    t_done: float
    delay_s: float = 0.0
    retry_after: str | None = None
    detail: str = ""

    @property
    def earliest(self) -> float:
        """No receipt may come before this: the server's not-before is at least this late."""
        return self.t_start + self.delay_s


@dataclass
class Ledger:
    attempts: list[Attempt] = field(default_factory=list)

    def add(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    def of(self, outcome: Outcome) -> list[Attempt]:
        return [a for a in self.attempts if a.outcome == outcome]

    @property
    def acked(self) -> list[Attempt]:
        return self.of("acked")

    def acked_nonces(self) -> set[str]:
        return {a.nonce for a in self.acked}


async def publish(
    client: httpx.AsyncClient,
    ledger: Ledger,
    url: str,
    nonce: str,
    *,
    headers: dict[str, str] | None = None,
    delay_s: float = 0.0,
    body: bytes | None = None,
    trickle_s: float = 0.0,
) -> Attempt:
    """POST /v2/publish/<url> with the nonce's body; record and return the attempt.

    ``trickle_s`` streams the body in two chunks that far apart, so the request is still in
    flight at a chosen moment (e.g. when a process is killed).
    """
    hdrs = {f"Upstash-Forward-{NONCE_HEADER}": nonce, **(headers or {})}
    if delay_s:
        hdrs["Upstash-Delay"] = f"{round(delay_s * 1000)}ms"
    t_start = time.time()
    status: int | None = None
    message_id: str | None = None
    retry_after: str | None = None
    detail = ""
    data = body if body is not None else body_for(nonce)
    content: bytes | AsyncIterator[bytes] = data
    if trickle_s:

        async def chunks() -> AsyncIterator[bytes]:
            yield data[:10]
            await asyncio.sleep(trickle_s)
            yield data[10:]

        content = chunks()
    try:
        r = await client.post(f"/v2/publish/{url}", content=content, headers=hdrs)
        status = r.status_code
        retry_after = r.headers.get("retry-after")
        if 200 <= status < 300:
            message_id = r.json()["messageId"]
        else:
            detail = r.text[:200]
    except httpx.TransportError as exc:  # timeout, refused, reset: the outcome is unknown
        detail = f"{type(exc).__name__}: {exc}"
    outcome: Outcome = (
        "unknown"
        if status is None or status >= 500
        else "acked"
        if 200 <= status < 300
        else "rejected"
    )
    attempt = Attempt(
        nonce, outcome, status, message_id, t_start, time.time(), delay_s, retry_after, detail
    )
    ledger.add(attempt)
    return attempt


@dataclass
class Report:
    """Counts are of distinct nonces (a deduplicated publish sends one nonce several times)."""

    attempted: int
    acked: int
    rejected: int
    unknown: int
    delivered: int  # distinct nonces with a 2xx receipt
    lost: set[str]
    unexpected: set[str]
    rejected_delivered: set[str]
    recovered: set[str]
    duplicates: int
    early: list[tuple[str, float]]  # (nonce, seconds early)
    corrupt: list[str]
    bad_signatures: int
    max_lateness_s: float

    def summary(self, name: str) -> str:
        return (
            f"[{name}] attempted={self.attempted} acked={self.acked} rejected={self.rejected} "
            f"unknown={self.unknown} delivered={self.delivered} lost={len(self.lost)} "
            f"unexpected={len(self.unexpected)} rejected_delivered={len(self.rejected_delivered)} "
            f"recovered={len(self.recovered)} duplicates={self.duplicates} "
            f"early={len(self.early)} corrupt={len(self.corrupt)} "
            f"bad_signatures={self.bad_signatures} max_lateness={self.max_lateness_s:.1f}s"
        )

    def assert_rule(self) -> None:
        """The ledger rule, without the per-scenario duplicate and lateness bounds."""
        assert self.lost == set(), f"acknowledged but never delivered: {sorted(self.lost)[:10]}"
        assert self.unexpected == set(), f"delivered, never sent: {sorted(self.unexpected)[:10]}"
        assert self.rejected_delivered == set(), "a rejected publish was delivered"
        assert self.early == [], f"delivered before not-before: {self.early[:10]}"
        assert self.corrupt == [], f"bodies, headers or ids not intact: {self.corrupt[:10]}"
        assert self.bad_signatures == 0


def check(ledger: Ledger, receipts: Sequence[Receipt]) -> Report:
    # A nonce is sent more than once only with a deduplication id: judge by its earliest try.
    by_nonce: dict[str, Attempt] = {}
    acked_ids: dict[str, set[str]] = {}
    for a in sorted(ledger.attempts, key=lambda a: a.t_start):
        by_nonce.setdefault(a.nonce, a)
        if a.message_id is not None:
            acked_ids.setdefault(a.nonce, set()).add(a.message_id)
    delivered: Counter[str] = Counter()
    early: list[tuple[str, float]] = []
    corrupt: list[str] = []
    lateness = 0.0
    for r in receipts:
        nonce = nonce_of(r.body)
        if nonce is None:
            corrupt.append(f"unreadable body {r.body[:60]!r} ({r.message_id})")
            continue
        forwarded = {k.lower(): v for k, v in r.headers.items()}.get(NONCE_HEADER.lower())
        if forwarded != nonce:
            corrupt.append(f"{nonce}: forwarded header {forwarded!r}")
        a = by_nonce.get(nonce)
        if a is not None:
            ids = acked_ids.get(nonce)
            if ids is not None and r.message_id not in ids:
                corrupt.append(f"{nonce}: message id {r.message_id} not in acked {ids}")
            if r.at < a.earliest:
                early.append((nonce, round(a.earliest - r.at, 3)))
            lateness = max(lateness, r.at - max(a.t_done, a.t_start + a.delay_s))
        if 200 <= r.answered < 300:
            delivered[nonce] += 1
    attempted = set(by_nonce)
    got = set(delivered)
    return Report(
        attempted=len(by_nonce),
        acked=len(ledger.acked_nonces()),
        rejected=len({a.nonce for a in ledger.of("rejected")}),
        unknown=len({a.nonce for a in ledger.of("unknown")} - ledger.acked_nonces()),
        delivered=len(got),
        lost=ledger.acked_nonces() - got,
        unexpected=got - attempted,
        rejected_delivered={a.nonce for a in ledger.of("rejected")} & got,
        recovered=({a.nonce for a in ledger.of("unknown")} - ledger.acked_nonces()) & got,
        duplicates=sum(c - 1 for c in delivered.values()),
        early=early,
        corrupt=corrupt,
        bad_signatures=sum(1 for r in receipts if not r.signature_ok),
        max_lateness_s=lateness,
    )


def drain(
    sink: Sink,
    prefix: str,
    ledger: Ledger,
    *,
    timeout: float = 120,
    quiet_s: float = 3.0,
) -> list[Receipt]:
    """Wait until every acked nonce has a 2xx receipt, then until receipts stop for ``quiet_s``.

    Returns the receipts either way; a timeout shows up as ``lost`` in ``check``.
    """
    want = ledger.acked_nonces()

    def done(got: list[Receipt]) -> bool:
        return want <= {n for r in got if 200 <= r.answered < 300 and (n := nonce_of(r.body))}

    deadline = time.monotonic() + timeout
    while not done(sink.received(prefix)) and time.monotonic() < deadline:
        time.sleep(0.2)
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(sink.received(prefix))
        if n != seen:
            seen, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.2)
    return sink.received(prefix)


def client(base_url: str, token: str, timeout: float = 30) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
    )


async def steady(
    make: Callable[[int], asyncio.Future[Attempt] | asyncio.Task[Attempt]],
    *,
    rate: float,
    stop: asyncio.Event,
) -> None:
    """Open loop: start ``make(i)`` every 1/rate s until ``stop``, then await all of them."""
    tasks: list[asyncio.Future[Attempt] | asyncio.Task[Attempt]] = []
    began = time.monotonic()
    i = 0
    while not stop.is_set():
        tasks.append(make(i))
        i += 1
        nxt = began + i / rate
        await asyncio.sleep(max(0.0, nxt - time.monotonic()))
    await asyncio.gather(*tasks)
