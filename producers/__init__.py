"""What appends to Kafka: the QStash v2 HTTP API, its Kafka adapter and the Python client."""
