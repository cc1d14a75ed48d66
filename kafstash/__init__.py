"""kafstash: self-hosted, QStash-compatible HTTP messaging on Apache Kafka.

This package is the composition root: configuration, the CLI and the wiring of the rooms
(``schemas``, ``producers``, ``streams``, ``sinks``, ``infra``).
"""

__version__ = "0.1.0"
