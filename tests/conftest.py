"""Shared pytest fixtures for the whole suite.

Add fixtures under the section they belong to (or a new section); keep each section's imports
and helpers next to it so sections can be read and changed independently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafstash.infra.kafka import LocalBroker, ensure_jars

# ====================================================================================== Kafka
# One broker per test session: starting one costs seconds. Set KAFKA_BOOTSTRAP_SERVERS to run
# against an existing cluster instead; then `local_broker` is None and fault tests should skip.


@pytest.fixture(scope="session")
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The session's LocalBroker, for tests that kill/restart it; None with an external Kafka."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    ensure_jars()
    broker = LocalBroker(Path(tmp_path_factory.mktemp("kafka")))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker: LocalBroker | None) -> str:
    """``host:port[,host:port]`` for aiokafka's ``bootstrap_servers``."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        return external
    assert local_broker is not None
    return local_broker.bootstrap


# ================================================================================= kafstash
# A Stack is the three roles as processes with their own topic prefix; a Sink is a real HTTP
# destination on 127.0.0.1 that verifies every signature with the official Python Receiver.

from collections.abc import Callable  # noqa: E402

from tests.sink import Sink  # noqa: E402
from tests.stack import Stack  # noqa: E402


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    """kafstash on the session broker with the test's own topic prefix, groups and state."""
    with Stack(kafka_bootstrap, tmp_path) as s:
        yield s


@pytest.fixture(scope="module")
def module_stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One kafstash for a whole module, for modules whose tests share no state: each test uses
    its own routes (``route``), ids and names. A module opts in by overriding ``stack`` with it;
    starting a stack costs ~5 s, and the suite must stay within its time budget."""
    with Stack(kafka_bootstrap, tmp_path_factory.mktemp("module-stack")) as s:
        yield s


@pytest.fixture
def sink(stack: Stack) -> Iterator[Sink]:
    with Sink(
        current_key=stack.user.current_signing_key, next_key=stack.user.next_signing_key
    ) as s:
        yield s


@pytest.fixture
def route(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Unique sink paths per test: ``route("ok")`` → ``/ok/<test-id>``."""
    tag = uuid.uuid4().hex[:8]

    def make(kind: str) -> str:
        return f"/{kind}/{request.node.name[:40]}-{tag}"

    return make


import uuid  # noqa: E402

# ============================================================================== parallel runs
# pyproject's addopts run the suite on pytest-xdist workers with `--dist loadgroup`: tests go
# to whichever worker is free, one by one, except those pinned to a group. A test that uses a
# module-scoped fixture (a module's shared stack, a scenario run once and judged by several
# tests) is pinned to its module's group here, so that fixture starts once, in one worker;
# a module needs no mark of its own to share a stack. The fault scenarios (kills, restarts,
# brokers of their own: tests/faults, tests/infra) form one group: they run one at a time,
# each beside at most one lighter test, since two recoveries at once starve each other on
# 2 cores. Each worker is its own session with its own session broker (~0.6 GB, a few seconds
# to start): tests never kill that one.

SERIAL_DIRS = ("tests/faults/", "tests/infra/")


@pytest.hookimpl(tryfirst=True)  # before xdist turns the marks into the groups' node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SERIAL_DIRS):
            item.add_marker(pytest.mark.xdist_group("faults"))
            continue
        info = getattr(item, "_fixtureinfo", None)
        if info is None or any(item.iter_markers("xdist_group")):
            continue
        scopes = {d.scope for defs in info.name2fixturedefs.values() for d in defs}
        if scopes & {"class", "module", "package"}:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


# pytest-xdist (3.8) tells the controller an item's group by appending "@<group>" to its node id,
# and writes that into `item._nodeid`; pytest 9.2 reads node ids from `item._id`, so the suffix
# went missing without a word and every test was a unit of its own (pytest-xdist#1386): the
# fault scenarios ran two at a time and a module's shared fixture started on both workers (the
# sender-pause scenario ran twice, 25 s each). Where xdist's suffix did not take, the hook below
# writes it the way pytest reads it; a grouped test that still lacks it fails at setup, so a
# later pytest or xdist cannot drop the groups silently again.


def _group_suffix(item: pytest.Item) -> str | None:
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return "@" + "_".join(sorted(names)) if names else None


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")  # after xdist's
def pytest_collection_modifyitems_group_ids(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not getattr(config.option, "loadgroup", False):  # set in xdist's workers only
        return
    try:
        from _pytest.nodeid import NodeId  # noqa: PLC0415 - pytest >= 9.2
    except ImportError:
        return  # an older pytest reads `_nodeid`: xdist's own suffix took
    for item in items:
        suffix = _group_suffix(item)
        if suffix is None or item.nodeid.endswith(suffix):
            continue
        if isinstance(getattr(item, "_id", None), NodeId):
            item._id = NodeId.parse(item.nodeid + suffix)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not getattr(item.config.option, "loadgroup", False):
        return
    suffix = _group_suffix(item)
    if suffix is not None and not item.nodeid.endswith(suffix):
        pytest.fail(
            f"--dist loadgroup did not group this test ({suffix[1:]}): pytest-xdist could not "
            "write the group into its node id (tests/conftest.py)",
            pytrace=False,
        )
