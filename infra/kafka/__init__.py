"""A single-node Apache Kafka 4.x broker run from Maven Central jars, for tests and local work."""

from infra.kafka.broker import BrokerError, LocalBroker, ensure_jars

__all__ = ["BrokerError", "LocalBroker", "ensure_jars"]
