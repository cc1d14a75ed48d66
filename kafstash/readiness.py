"""How a role tells ``kafstash dev`` it is ready: its name, one line, on an inherited pipe.

``kafstash dev`` creates the pipe, hands its write end to every role it spawns and names the
descriptor in ``KAFSTASH_READY_FD``; a role run on its own has no such variable, and announcing
is then a no-op. A role announces once it can do its work (the API answers, the stream tables
are recovered, the consumers have joined their groups), which is what the banner promises. One
short write on a pipe is atomic (shorter than PIPE_BUF), so the roles' lines never interleave.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
from collections.abc import Mapping

from kafstash import environment

log = logging.getLogger(__name__)

READY_FD_ENV = environment.READY_FD.name


def announce(role: str, env: Mapping[str, str] | None = None) -> None:
    """Tell the ``kafstash dev`` that started this process that ``role`` is ready."""
    raw = (os.environ if env is None else env).get(READY_FD_ENV)
    if not raw:
        return
    try:
        os.write(int(raw), f"{role}\n".encode())
    except (ValueError, OSError) as exc:
        # The banner waits for this line, so say why it will not come; the role itself is fine.
        log.warning("could not tell kafstash dev that %s is ready (%s=%r): %s", role,
                    READY_FD_ENV, raw, exc)  # fmt: skip


class ReadyPipe:
    """The reading side, owned by ``kafstash dev``: which roles have announced themselves."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self._partial = b""

    @property
    def fd(self) -> int:
        """The descriptor a child inherits (``pass_fds``) and announces on."""
        return self._write

    def env(self) -> dict[str, str]:
        return {READY_FD_ENV: str(self._write)}

    def read(self, timeout_s: float) -> list[str]:
        """The roles announced since the last call, waiting up to ``timeout_s`` for the first."""
        readable, _, _ = select.select([self._read], [], [], timeout_s)
        if not readable:
            return []
        data = self._partial
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._read, 4096):
                data += chunk
        *lines, self._partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in lines if line]

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
