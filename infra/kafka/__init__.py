"""Apache Kafka 4.x run from Maven Central jars, for tests and local work: one node or a cluster."""

from kafstash.infra.kafka.broker import BrokerError, LocalBroker, ensure_jars
from kafstash.infra.kafka.cluster import ClusterNode, LocalCluster

__all__ = ["BrokerError", "ClusterNode", "LocalBroker", "LocalCluster", "ensure_jars"]
