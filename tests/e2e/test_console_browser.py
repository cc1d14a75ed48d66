"""The web console in a real browser: Debian's headless Chromium driven by Playwright, against
a real stack, with the official Python SDK publishing. One stack and one browser for the module;
each test has its own browser context (so its own sessionStorage) and its own sink routes.

Screenshots go to ``$KAFSTASH_TEST_ARTIFACTS`` (default ``tests/artifacts/``, ignored by git).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from qstash import QStash
from qstash.message import FlowControl

from kafstash.schemas.users import DEV_USERS
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The flags that work on this network-less machine (see README, Console): without the
# background-networking ones Chromium keeps dialling Google and is refused.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000
ARTIFACTS = Path(os.environ.get("KAFSTASH_TEST_ARTIFACTS", Path(__file__).parents[1] / "artifacts"))
OTHER = DEV_USERS[1]  # a second user whose data must never show up in the first one's console


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    return module_stack


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Browser]:
    # Playwright's sync API runs an event loop on this thread while the browser is open, and
    # Stack.start calls asyncio.run: the module's stack must be up first (hence ``stack``).
    del stack
    if not Path(CHROMIUM).exists():
        reason = "chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as p:
        # launch() gives every run a fresh, empty profile (its own --user-data-dir).
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("console", lambda msg: errors.append(msg.text) if is_script_error(msg) else None)
    yield p
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / f"{request.node.name}-end.png"), full_page=True)
    context.close()
    # A CSP violation or a script error is a defect even when the assertions passed.
    assert not errors, errors


@pytest.fixture
def client(stack: Stack) -> Iterator[QStash]:
    c = QStash(stack.token, base_url=stack.base_url)
    yield c
    c.http._client.close()  # the SDK has no public close()


@pytest.fixture
def other_client(stack: Stack) -> Iterator[QStash]:
    c = QStash(OTHER.token, base_url=stack.base_url)
    yield c
    c.http._client.close()


@pytest.fixture
def route() -> Callable[[str], str]:
    """A unique sink path per test and kind (``ok``, ``status/500``, ...)."""
    tag = uuid.uuid4().hex[:8]
    return lambda kind: f"/{kind}/{tag}"


def is_script_error(msg: ConsoleMessage) -> bool:
    # A 401 or 404 answer is logged as "Failed to load resource"; the console expects those.
    return msg.type == "error" and not msg.text.startswith("Failed to load resource")


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Page, stack: Stack, token: str | None = None) -> None:
    page.goto(f"{stack.base_url}/console/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", token or stack.token)
    page.click("#login button[type=submit]")


def open_view(page: Page, hash_: str) -> None:
    page.evaluate("h => { window.location.hash = h; }", hash_)


def refresh_until(page: Page, locator: str, timeout_s: float = 30) -> None:
    """Click Refresh until ``locator`` is on the page: the console shows state when asked."""
    deadline = time.monotonic() + timeout_s
    while page.locator(locator).count() == 0:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{locator} not shown after {timeout_s}s:\n{page.inner_text('body')}"
            )
        page.click("#refresh")
        page.wait_for_timeout(500)


def test_security_headers_on_the_console(stack: Stack) -> None:
    r = httpx.get(f"{stack.base_url}/console/")
    assert r.status_code == 200
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_wrong_token_sees_the_login_page_again(page: Page, stack: Stack) -> None:
    log_in(page, stack, token="not-a-token")
    expect(page.locator("#login-error")).to_contain_text("invalid token")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("Object.keys(sessionStorage)") == []
    shot(page, "login-wrong-token")


def test_publish_through_the_sdk_and_see_it_delivered(
    page: Page, stack: Stack, sink: Sink, client: QStash, route: Callable[[str], str]
) -> None:
    log_in(page, stack)
    expect(page.locator("#messages")).to_be_visible()
    res = client.message.publish_json(url=sink.url(route("ok")), body={"hi": 1}, label="console")
    mid = res.message_id  # type: ignore[union-attr]
    refresh_until(page, f"#messages tr[data-message-id='{mid}'][data-phase='finished']")
    row = page.locator(f"#messages tr[data-message-id='{mid}']")
    expect(row).to_contain_text("DELIVERED")
    expect(row).to_contain_text("console")
    shot(page, "messages-delivered")

    # Its own page lists every state change, the delivery last.
    row.locator("a.id").click()
    expect(page.locator("#message")).to_contain_text(mid)
    expect(page.locator("#message tr[data-state='DELIVERED']")).to_have_count(1)
    expect(page.locator("#message tr[data-state='CREATED']")).to_have_count(1)

    # The event log filtered by message id and state shows exactly that delivery.
    open_view(page, "#events")
    page.fill("#event-filters input[name=messageId]", mid)
    page.select_option("#event-filters select[name=state]", "DELIVERED")
    page.click("#event-filters button[type=submit]")
    expect(page.locator("#event-table tbody tr")).to_have_count(1)
    expect(page.locator("#event-table tbody tr")).to_contain_text("DELIVERED")
    shot(page, "event-log-filtered")

    # The chart counts it among the last hour's deliveries.
    open_view(page, "#charts")
    expect(page.locator("#charts svg.chart")).to_have_count(2)
    delivered = page.locator("#totals .key.delivered").inner_text()
    assert int(delivered.split()[-1]) >= 1, delivered
    assert page.locator("#charts rect.bar.delivered").count() >= 1
    assert page.locator("#charts polyline.line.p50").count() == 1
    shot(page, "charts")


def test_cancel_a_delayed_message(
    page: Page, stack: Stack, sink: Sink, client: QStash, route: Callable[[str], str]
) -> None:
    res = client.message.publish_json(url=sink.url(route("ok")), body="later", delay="1h")
    mid = res.message_id  # type: ignore[union-attr]
    log_in(page, stack)
    open_view(page, "#messages?phase=delayed")
    refresh_until(page, f"#messages tr[data-message-id='{mid}'][data-phase='delayed']")
    button = page.locator(f"#messages tr[data-message-id='{mid}'] button.danger")
    button.click()
    expect(button).to_have_text("Confirm cancel")
    button.click()
    expect(page.locator("#status")).to_contain_text(f"Cancelled {mid}")
    open_view(page, "#messages?phase=finished")
    refresh_until(page, f"#messages tr[data-message-id='{mid}'][data-phase='finished']")
    expect(page.locator(f"#messages tr[data-message-id='{mid}']")).to_contain_text("CANCELED")


def test_retry_a_dlq_entry(
    page: Page, stack: Stack, sink: Sink, client: QStash, route: Callable[[str], str]
) -> None:
    res = client.message.publish_json(url=sink.url(route("status/500")), body="x", retries=0)
    mid = res.message_id  # type: ignore[union-attr]
    log_in(page, stack)
    open_view(page, "#dlq")
    refresh_until(page, f"#dlq tr[data-message-id='{mid}']")
    row = page.locator(f"#dlq tr[data-message-id='{mid}']")
    expect(row).to_contain_text("500")
    shot(page, "dlq")
    dlq_id = row.get_attribute("data-dlq-id")
    assert dlq_id
    row.get_by_role("button", name="Retry").click()
    expect(page.locator("#status")).to_contain_text(f"Retried {dlq_id} as msg")
    retried_as = page.locator("#status").inner_text().rsplit(" ", 1)[-1].rstrip(".")
    # The entry left the DLQ; the new message was published from it and fails again (500).
    expect(page.locator(f"#dlq tr[data-dlq-id='{dlq_id}']")).to_have_count(0)
    sink.wait_count(route("status/500"), 2, timeout=30)
    assert retried_as != mid
    refresh_until(page, f"#dlq tr[data-message-id='{retried_as}']")
    shot(page, "dlq-retried")

    # Delete the new entry: the first click only arms the button.
    again = page.locator(f"#dlq tr[data-message-id='{retried_as}']")
    again_id = again.get_attribute("data-dlq-id")
    assert again_id
    delete = again.locator("button.danger")
    expect(delete).to_have_text("Delete")
    delete.click()
    expect(delete).to_have_text("Confirm delete")
    assert again_id in dlq_ids(client)
    delete.click()
    expect(page.locator("#status")).to_contain_text(f"Deleted {again_id}")
    expect(page.locator(f"#dlq tr[data-dlq-id='{again_id}']")).to_have_count(0)
    assert again_id not in dlq_ids(client)
    shot(page, "dlq-deleted")


def dlq_ids(client: QStash) -> set[str]:
    ids: set[str] = set()
    cursor = None
    while True:
        page = client.dlq.list(cursor=cursor, count=100)
        ids |= {m.dlq_id for m in page.messages}
        if not page.cursor or not page.messages:
            return ids
        cursor = page.cursor


def test_pause_and_resume_a_schedule(
    page: Page, stack: Stack, sink: Sink, client: QStash, route: Callable[[str], str]
) -> None:
    sid = client.schedule.create(destination=sink.url(route("ok")), cron="0 0 1 1 *", body="y")
    log_in(page, stack)
    open_view(page, "#schedules")
    row = page.locator(f"#schedules tr[data-schedule-id='{sid}']")
    expect(row).to_have_attribute("data-paused", "false")
    next_run = client.schedule.get(sid).next_schedule_time
    assert next_run
    expect(row).to_contain_text(time.strftime("%Y-%m-%d %H:%M", time.gmtime(next_run / 1000)))
    row.get_by_role("button", name="Pause").click()
    expect(page.locator("#status")).to_contain_text(f"Paused {sid}")
    expect(row).to_have_attribute("data-paused", "true")
    assert client.schedule.get(sid).paused
    shot(page, "schedule-paused")
    row.get_by_role("button", name="Resume").click()
    expect(row).to_have_attribute("data-paused", "false")
    assert not client.schedule.get(sid).paused


def test_another_users_ids_are_not_shown(
    page: Page,
    stack: Stack,
    sink: Sink,
    client: QStash,
    other_client: QStash,
    route: Callable[[str], str],
) -> None:
    theirs = other_client.message.publish_json(url=sink.url(route("ok")), body="t", retries=0)
    their_dead = other_client.message.publish_json(
        url=sink.url(route("status/500")), body="t", retries=0
    )
    their_schedule = other_client.schedule.create(
        destination=sink.url(route("ok")), cron="0 0 1 1 *"
    )
    mine = client.message.publish_json(url=sink.url(route("ok")), body="m")
    sink.wait_count(route("status/500"), 1, timeout=30)
    log_in(page, stack)
    refresh_until(page, f"#messages tr[data-message-id='{mine.message_id}']")  # type: ignore[union-attr]
    their_ids = [theirs.message_id, their_dead.message_id, their_schedule]  # type: ignore[union-attr]
    for view in ("#messages", "#events", "#dlq", "#schedules", "#charts"):
        open_view(page, view)
        expect(page.locator(f"section{view.split('?')[0]}")).to_be_visible()
        text = page.inner_text("main")
        for their in their_ids:
            assert their not in text, (view, their)
    # The same ids opened directly are not found for this user either.
    open_view(page, f"#message?id={theirs.message_id}")  # type: ignore[union-attr]
    expect(page.locator("#message")).to_contain_text("Not pending")
    expect(page.locator("#message")).to_contain_text("No events.")


def test_markup_in_a_label_and_a_url_renders_as_text(
    page: Page, stack: Stack, sink: Sink, client: QStash
) -> None:
    evil = "<script>window.__pwned=1</script>"
    evil_img = "<img src=x onerror=window.__pwned=2>"
    tag = uuid.uuid4().hex[:8]
    # The batch endpoint takes the destination from its JSON body, so it arrives unencoded.
    [res] = client.message.batch_json(
        [{"url": sink.url(f"/ok/{tag}/{evil}"), "body": "e", "label": f"{evil_img}{evil}"}]
    )
    mid = res.message_id  # type: ignore[union-attr]
    log_in(page, stack)
    refresh_until(page, f"#messages tr[data-message-id='{mid}']")
    row = page.locator(f"#messages tr[data-message-id='{mid}']")
    expect(row).to_contain_text(f"/ok/{tag}/{evil}")
    expect(row).to_contain_text(f"{evil_img}{evil}")
    open_view(page, f"#events?messageId={mid}")
    expect(page.locator("#event-table tbody tr").first).to_contain_text(evil)
    # No element was made from the data, and nothing ran.
    assert page.locator("main script, main img").count() == 0
    assert page.evaluate("window.__pwned") is None
    shot(page, "escaping")


def test_event_log_pages_with_its_cursor_and_filters_by_time(
    page: Page, stack: Stack, sink: Sink, client: QStash, route: Callable[[str], str]
) -> None:
    url = sink.url(route("ok"))
    ids = [client.message.publish_json(url=url, body=str(i)).message_id for i in range(2)]  # type: ignore[union-attr]
    sink.wait_count(route("ok"), 2, timeout=30)
    log_in(page, stack)
    # CREATED, ACTIVE, DELIVERED per message: six events, two a page, newest first.
    open_view(page, f"#events?url={quote(url, safe='')}&state=&count=2")
    rows = page.locator("#event-table tbody tr")
    expect(rows).to_have_count(2)
    for shown in (4, 6):
        page.click("#older")
        expect(rows).to_have_count(shown)
    # A full page still carries a cursor; the page after the last event is empty and has none.
    if page.locator("#older").is_visible():
        page.click("#older")
    expect(page.locator("#older")).to_be_hidden()
    expect(rows).to_have_count(6)
    assert {r.get_attribute("data-message-id") for r in rows.all()} == set(ids)
    states = [r.get_attribute("data-state") for r in rows.all()]
    assert sorted(states) == ["ACTIVE", "ACTIVE", "CREATED", "CREATED", "DELIVERED", "DELIVERED"]
    assert (states[0], states[-1]) == ("DELIVERED", "CREATED")  # newest first
    shot(page, "event-log-paged")

    # A time range after the deliveries holds none of them; one around them holds all.
    later = int(time.time() * 1000) + 60_000
    open_view(page, f"#events?url={quote(url, safe='')}&fromDate={later}")
    expect(page.locator("#events .hint")).to_have_text("No events match.")
    expect(page.locator("#event-filters input[name=fromDate]")).not_to_have_value("")
    open_view(page, f"#events?url={quote(url, safe='')}&toDate={later}&count=100")
    expect(rows).to_have_count(6)


@pytest.fixture
def short_memory(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack whose API keeps 4 s of events, with the archiver: older ones are in Iceberg."""
    env = {"KAFSTASH_EVENTS_RETENTION": "4", "KAFSTASH_ARCHIVE_INTERVAL": "0.5"}
    s = Stack(kafka_bootstrap, tmp_path, env=env)
    # Off this thread: Playwright's event loop runs on it, and Stack.start calls asyncio.run.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(s.start).result()
    try:
        s.start_role("archiver")
        yield s
        s.kill("archiver")  # its table is not looked at afterwards
    finally:
        s.stop()


def test_event_log_continues_into_the_iceberg_history(
    page: Page, short_memory: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    stack = short_memory
    c = QStash(stack.token, base_url=stack.base_url)
    label = f"hist-{uuid.uuid4().hex[:6]}"
    try:
        old = c.message.publish_json(url=sink.url(route("ok") + "-old"), body="o", label=label)
        sink.wait_count(route("ok") + "-old", 1, timeout=30)
        time.sleep(4 + 3)  # past the API's window, and archived
        new = c.message.publish_json(url=sink.url(route("ok") + "-new"), body="n", label=label)
        sink.wait_count(route("ok") + "-new", 1, timeout=30)
    finally:
        c.http._client.close()
    log_in(page, stack)
    open_view(page, f"#events?label={label}&count=3")
    rows = page.locator("#event-table tbody tr")
    expect(rows).to_have_count(3)
    assert {r.get_attribute("data-message-id") for r in rows.all()} == {new.message_id}  # type: ignore[union-attr]
    # Older pages: the view is done, the cursor moves on into the delivery log.
    deadline = time.monotonic() + 30
    while page.locator(f"#event-table tr[data-message-id='{old.message_id}']").count() < 3:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, page.inner_text("main")
        if page.locator("#older").is_visible():
            page.click("#older")
        else:  # not archived yet: ask again from the start
            page.click("#refresh")
        page.wait_for_timeout(500)
    expect(page.locator("#events .hint")).to_have_text(
        "Older pages come from the archived history."
    )
    page.wait_for_timeout(1000)  # any page still loading lands before the rows are counted
    # Every event once: no page appended twice, none skipped between the view and the log.
    seen = [(r.get_attribute("data-message-id"), r.get_attribute("data-state")) for r in rows.all()]
    assert len(seen) == len(set(seen)), seen
    old_states = sorted(state for mid, state in seen if mid == old.message_id)  # type: ignore[union-attr]
    assert old_states == ["ACTIVE", "CREATED", "DELIVERED"]
    shot(page, "event-log-history")


def test_queues_groups_and_deleting_a_schedule(
    page: Page, stack: Stack, sink: Sink, client: QStash, route: Callable[[str], str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    queue, group = f"q-{tag}", f"g-{tag}"
    client.queue.upsert(queue, parallelism=2)
    # A flow-control key: one message through it, then paused with a second one waiting.
    key, fc_path = f"fk-{tag}", route("ok") + "-fc"
    flow: FlowControl = {"key": key, "parallelism": 2, "rate": 5, "period": "60s"}
    client.message.publish_json(url=sink.url(fc_path), body="1", flow_control=flow)
    sink.wait_count(fc_path, 1, timeout=30)
    client.flow_control.pause(key)
    client.message.publish_json(url=sink.url(fc_path), body="2", flow_control=flow)
    client.url_group.upsert_endpoints(group, [{"url": sink.url(route("ok")), "name": "first"}])
    sid = client.schedule.create(destination=sink.url(route("ok")), cron="0 0 1 1 *")
    log_in(page, stack)

    open_view(page, "#queues")
    row = page.locator(f"#queues tr[data-queue='{queue}']")
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Pause").click()
    expect(page.locator("#status")).to_contain_text(f"Paused queue {queue}")
    expect(row).to_contain_text("paused")
    assert client.queue.get(queue).paused

    # The key's row: waiting, parallelism and rate counts against their limits, its state.
    want = [key, "1", "0 / 2", "1 / 5 per 60s", "paused"]
    key_row = page.locator(f"#queues tr[data-flow-control-key='{key}'] td")
    deadline = time.monotonic() + 30
    while (cells := key_row.all_inner_texts()) != want:
        assert time.monotonic() < deadline, (cells, page.inner_text("main"))
        page.click("#refresh")
        page.wait_for_timeout(500)
    shot(page, "flow-control-keys")
    client.flow_control.resume(key)
    sink.wait_count(fc_path, 2, timeout=30)  # the waiting message goes once resumed

    open_view(page, "#groups")
    expect(page.locator(f"#groups tr[data-group='{group}']")).to_contain_text(
        f"first: {sink.url(route('ok'))}"
    )
    shot(page, "url-groups")

    open_view(page, "#schedules")
    delete = page.locator(f"#schedules tr[data-schedule-id='{sid}'] button.danger")
    delete.click()  # the first click only arms it
    expect(delete).to_have_text("Confirm delete")
    assert client.schedule.get(sid).schedule_id == sid
    delete.click()
    expect(page.locator("#status")).to_contain_text(f"Deleted {sid}")
    expect(page.locator(f"#schedules tr[data-schedule-id='{sid}']")).to_have_count(0)
    assert sid not in {s.schedule_id for s in client.schedule.list()}
