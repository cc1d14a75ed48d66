"""The console's pure JavaScript (stats and chart scales) under Node's own test runner."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

TESTS = Path(__file__).parents[1] / "js" / "console_stats.test.mjs"


def test_console_figures_in_node() -> None:
    node = shutil.which("node")
    assert node, "node is required (the JS SDK tests need it too)"
    run = subprocess.run(
        [node, "--test", str(TESTS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "# pass 4" in run.stdout, run.stdout
