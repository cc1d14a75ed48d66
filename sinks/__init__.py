"""Sinks: where messages leave kafstash (HTTP destinations, callbacks, archives)."""
