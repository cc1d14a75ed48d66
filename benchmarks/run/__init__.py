"""kafstash benchmarks on one machine, each figure a ratio to a baseline measured in the same run.

Usage: ``python -m benchmarks.run [--quick]`` from the repository root (full run ≤ 5 min,
``--quick`` ≤ 90 s). See ``benchmarks/README.md`` for what is measured and how to read the table.

Everything runs on 127.0.0.1: a Kafka broker (LocalBroker in a temp dir, unless
KAFKA_BOOTSTRAP_SERVERS is set), the kafstash roles as processes (tests/stack.py, its own topic
prefix, KAFSTASH_PARTITIONS=4), a hello-world app and a counting sink (benchmarks/servers.py,
uvicorn), and ``wrk`` as the C load generator. Every process started here is stopped at the end,
also on Ctrl-C, SIGTERM or an error.

One module per phase, in the order they run: ``baselines``, ``publish``, ``drains`` (stream
workers alone, sender alone), ``pipeline``, ``end_to_end``, ``clients``; each returns its
figures and turns them into table rows. They share ``context.Bench`` (the run's processes and
stacks) over ``benchmarks.harness`` (process start/stop, CPU accounting, the open-loop
generator), which ``benchmarks.soak`` uses too.
"""
