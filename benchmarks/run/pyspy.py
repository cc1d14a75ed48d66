"""``--py-spy DIR``: profile a role while a phase runs, and summarize the profile in the report."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks.harness import Procs, terminate


class PySpy:
    """``py-spy record`` attached to a role while a phase runs (``--py-spy DIR``); optional."""

    def __init__(self, outdir: Path | None, procs: Procs) -> None:
        self.outdir = outdir
        self.procs = procs
        self.exe = shutil.which("py-spy")
        self.summaries: list[str] = []

    async def attach(self, name: str, pid: int) -> Callable[[], Awaitable[None]]:
        async def nothing() -> None:
            return None

        if self.outdir is None or self.exe is None:
            if self.outdir is not None:
                self.summaries.append("py-spy not installed (pip install py-spy)")
            return nothing
        self.outdir.mkdir(parents=True, exist_ok=True)
        out = self.outdir / f"{name}.txt"
        proc = await asyncio.create_subprocess_exec(
            self.exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            "--duration",
            "600",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.add("py-spy", lambda: terminate(proc))

        async def detach() -> None:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 15)
            self.summaries.append(self.summarize(name, out))

        return detach

    @staticmethod
    def summarize(name: str, path: Path, top: int = 8) -> str:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return f"{name}: no py-spy profile written"
        leaf: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        total = 0
        for ln in lines:
            stack, _, n = ln.rpartition(" ")
            if not n.isdigit():
                continue
            frames = stack.split(";")
            count = int(n)
            total += count
            leaf[frames[-1]] += count
            for f in set(frames):
                incl[f] += count
        if not total:
            return f"{name}: empty py-spy profile"

        def short(frame: str) -> str:
            return re.sub(r"\(/.*?(site-packages|main)/", "(", frame)

        def fmt(c: Counter[str], skip_frames: bool) -> str:
            items = [
                (f, k) for f, k in c.most_common(80) if not (skip_frames and _FRAMEWORK.search(f))
            ]
            return "; ".join(f"{100 * k / total:.0f}% {short(f)}" for f, k in items[:top])

        return (
            f"{name} ({total} CPU samples at 250/s, {path}):\n  self: {fmt(leaf, False)}\n"
            f"  inclusive: {fmt(incl, True)}"
        )


# Frames every stack passes through (process start, event loop, role entry): not informative.
_FRAMEWORK = re.compile(
    r"runpy|<module>|asyncio/(base_events|events|runners|tasks)\.py|uvloop/__init__|"
    r"kafstash/(__main__|cli|roles)\.py|mode/(worker|services|utils)|Thread\.|threading\.py"
)
