"""Stateful stream processors: dedup and delay tables; pure decisions, faust wiring in app.py."""
