"""Soak benchmark: kafstash under a fixed open-loop publish rate for minutes, then a full drain.

Run ``python -m benchmarks.soak --rate 200 --duration 180`` from the repository root; see
``benchmarks/README.md`` ("Soak") for what it prints and how to read it.
"""
