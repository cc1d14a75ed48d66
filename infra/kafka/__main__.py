"""Run a local Kafka broker in the foreground.

Usage: ``python -m kafstash.infra.kafka [--data-dir DIR] [--port N | --nodes 3]``.

Prints the bootstrap address once the broker is ready; Ctrl-C or SIGTERM stops it cleanly.
Reusing a ``--data-dir`` keeps its topics and records (and its ports). ``--nodes N`` runs a
LocalCluster of N combined KRaft nodes instead (fresh each time; use KAFSTASH_REPLICATION=3).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from kafstash.infra.kafka.broker import BrokerError, LocalBroker
from kafstash.infra.kafka.cluster import LocalCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kafstash.infra.kafka", description=__doc__)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".kafstash/kafka"),
        help="where server.properties, data and logs live (default: %(default)s)",
    )
    parser.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=90, help="seconds to wait for readiness")
    parser.add_argument("--nodes", type=int, default=1, help="run a cluster of this many nodes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Install before starting so a SIGTERM during start-up still ends in a clean stop.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if args.nodes > 1 and args.port is not None:
        parser.error("--port applies to a single broker; a cluster picks free ports")
    broker: LocalBroker | LocalCluster = (
        LocalCluster(args.data_dir, n=args.nodes)
        if args.nodes > 1
        else LocalBroker(args.data_dir, port=args.port)
    )
    try:
        broker.start(timeout=args.timeout)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(broker.bootstrap, flush=True)
        while not stop.is_set() and broker.is_running():
            stop.wait(1.0)
        if not broker.is_running():
            print(f"error: Kafka exited on its own; see {broker.logs_dir}", file=sys.stderr)
            return 1
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
