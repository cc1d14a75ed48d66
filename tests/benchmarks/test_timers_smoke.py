"""``python -m benchmarks.run --timers N`` end to end, small N, on the session's broker.

What it checks is what the phase claims, never its speed: every burst message fired exactly
once and nothing else did, the restarted stream worker logged the rows still waiting, and every
figure is in the JSON as a number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run.timers import burst_size

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
N = 2_000

NUMBERS = (
    "timers_load_s",
    "timers_startup_s",
    "timers_intake_s",
    "timers_intake_rps",
    "timers_rss_mb_ready",
    "timers_rss_mb_after_intake",
    "timers_rss_mb_peak",
    "timers_burst_lateness_p50_ms",
    "timers_burst_lateness_p99_ms",
    "timers_burst_lateness_max_ms",
    "timers_recovery_s",
    "timers_rss_mb_after_recovery",
    "timers_rss_mb_peak_recovery",
)


def test_timers_phase_fires_the_burst_and_recovers_after_kill_9(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    out = tmp_path / "timers.json"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--timers", str(N), "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Timers at scale" in r.stdout
    fig = json.loads(out.read_text())
    burst = burst_size(N)
    assert fig["profile"] == "timers"
    assert fig["timers_n"] == N
    assert fig["timers_burst_expected"] == burst
    assert fig["timers_burst_fired"] == burst
    assert fig["timers_burst_deliveries"] == burst  # no message fired twice
    assert fig["timers_early_fired"] == 0  # the rest are due an hour after the run
    assert fig["timers_recovered_pending"] == N - burst
    for key in NUMBERS:
        assert isinstance(fig[key], float | int), (key, fig[key])
    assert fig["timers_rss_mb_peak"] >= fig["timers_rss_mb_after_intake"] > 0
    assert fig["timers_recovery_s"] > 0
    assert fig["timers_burst_lateness_max_ms"] >= fig["timers_burst_lateness_p99_ms"]
    assert fig["cpu_us_per_msg_timers_intake"]["streams"] > 0
    assert fig["cpu_us_per_msg_timers_burst"]["streams"] > 0
