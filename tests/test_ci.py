"""CI runs what the README tells a newcomer to run, pinned by the lock file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_test_command() -> str:
    block = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    (line,) = [line for line in block.splitlines() if "# test it" in line]
    return line.split("#", 1)[0].strip()


def test_ci_runs_the_readme_test_command_with_the_lock() -> None:
    command = _readme_test_command()
    assert "-c requirements/lock.txt" in command
    # .ci/run may add pytest options (e.g. --durations) after the README's command, no more.
    assert any(line.startswith(command) for line in (ROOT / ".ci/run").read_text().splitlines())


def test_the_lock_pins_exact_versions_and_not_kafstash() -> None:
    pins = [
        line for line in (ROOT / "requirements/lock.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    assert pins
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", pin) for pin in pins), pins
    names = {pin.split("==")[0].lower() for pin in pins}
    assert "kafstash" not in names
    assert {"msgspec", "aiokafka", "pytest", "ruff"} <= names


def test_ci_scripts_answer_help_without_running() -> None:
    for script in (".ci/run", ".ci/lock"):
        r = subprocess.run(
            ["bash", str(ROOT / script), "--help"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert r.returncode == 0
        assert r.stdout.startswith("usage:")
