"""`kafstash dev` start-up without a broker: the ready pipe, waiting for every role, a role that
dies during start-up, and provisioning's wait for the group coordinator."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError

from kafstash.config import Settings
from kafstash.dev import StartupFailed, _Child, banner, wait_until_ready
from kafstash.provision import wait_for_group_coordinators
from kafstash.readiness import READY_FD_ENV, ReadyPipe, announce


@pytest.fixture
def pipe() -> Iterator[ReadyPipe]:
    p = ReadyPipe()
    try:
        yield p
    finally:
        p.close()


class _Proc:
    """Enough of Popen for the wait: ``poll()`` answers None until the process has exited."""

    def __init__(self, code: int | None = None) -> None:
        self.code = code

    def poll(self) -> int | None:
        return self.code


def _child(role: str, code: int | None = None) -> _Child:
    return _Child(role, _Proc(code))  # type: ignore[arg-type]


def test_announce_writes_the_role_to_the_inherited_descriptor(pipe: ReadyPipe) -> None:
    announce("api", pipe.env())
    announce("sender", {READY_FD_ENV: str(pipe.fd)})
    assert pipe.read(timeout_s=1) == ["api", "sender"]
    assert pipe.read(timeout_s=0) == []


def test_announce_without_kafstash_dev_is_a_no_op() -> None:
    announce("api", {})


def test_announce_on_a_bad_descriptor_warns_and_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    announce("api", {READY_FD_ENV: "not-a-number"})
    assert "could not tell kafstash dev that api is ready" in caplog.text


def test_a_child_process_announces_through_pass_fds(pipe: ReadyPipe) -> None:
    code = "from kafstash.readiness import announce; announce('streams')"
    env = {**pipe.env(), "PATH": ""}
    subprocess.run([sys.executable, "-c", code], env=env, pass_fds=(pipe.fd,), check=True)
    assert pipe.read(timeout_s=5) == ["streams"]


def test_wait_returns_once_every_role_has_announced(pipe: ReadyPipe) -> None:
    children = [_child("api"), _child("streams")]
    announce("streams", pipe.env())
    announce("api", pipe.env())
    assert wait_until_ready(children, pipe, lambda: False) is True


def test_wait_keeps_waiting_for_a_role_that_has_not_announced(pipe: ReadyPipe) -> None:
    children = [_child("api"), _child("streams")]
    announce("api", pipe.env())
    polls = iter([False, False, False, True])  # then asked to stop: the banner never came
    assert wait_until_ready(children, pipe, lambda: next(polls)) is False


def test_a_role_that_dies_during_start_up_fails_the_start_naming_it(pipe: ReadyPipe) -> None:
    children = [_child("api"), _child("streams", code=3)]
    announce("api", pipe.env())
    with pytest.raises(StartupFailed, match=r"streams exited with code 3 during start-up"):
        wait_until_ready(children, pipe, lambda: False)


def test_a_role_that_exits_after_announcing_is_left_to_the_supervisor(pipe: ReadyPipe) -> None:
    children = [_child("api", code=0), _child("streams")]
    announce("api", pipe.env())
    announce("streams", pipe.env())
    assert wait_until_ready(children, pipe, lambda: False) is True


def test_a_slow_start_says_what_it_waits_for(
    pipe: ReadyPipe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    now = [0.0]

    def clock() -> float:
        now[0] += 10
        return now[0]

    stops = iter([False] * 5 + [True])
    wait_until_ready([_child("sender")], pipe, lambda: next(stops), clock=clock, remind_every_s=30)
    assert "still starting: waiting for sender" in caplog.text


class _Admin:
    """FindCoordinator that fails with ``errors`` first, then answers."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.asked: list[str] = []

    async def find_coordinator(self, group_id: str) -> int:
        self.asked.append(group_id)
        if self.errors:
            raise self.errors.pop(0)
        return 1


async def test_provisioning_waits_out_the_loading_coordinator() -> None:
    admin = _Admin([GroupCoordinatorNotAvailableError(), GroupCoordinatorNotAvailableError()])
    await wait_for_group_coordinators(admin, ["a", "b"])  # type: ignore[arg-type]
    assert admin.asked == ["a", "a", "a", "b"]


async def test_provisioning_raises_a_coordinator_error_that_is_not_transient() -> None:
    admin = _Admin([GroupAuthorizationFailedError()])
    with pytest.raises(GroupAuthorizationFailedError):
        await wait_for_group_coordinators(admin, ["a"])  # type: ignore[arg-type]


async def test_provisioning_gives_up_waiting_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin = _Admin([GroupCoordinatorNotAvailableError()] * 100)
    now = iter([0.0, 1.0, 2.0, 99.0])
    await wait_for_group_coordinators(admin, ["a", "b"], timeout_s=60, clock=lambda: next(now))  # type: ignore[arg-type]
    assert "no group coordinator for a after 60s" in caplog.text
    assert "b" not in admin.asked


def test_the_banner_names_the_api_the_dev_credentials_and_the_console() -> None:
    settings = Settings.from_env({}, dev=True)
    text = banner(settings)
    url = f"http://{settings.api_host}:{settings.api_port}"
    assert f'QSTASH_URL="{url}"' in text
    assert f'QSTASH_TOKEN="{settings.users[0].token}"' in text
    assert f"{url}/console/" in text
    assert str(settings.home) in text
