"""Developer and test infrastructure: things kafstash needs around it, not in it (a local Kafka)."""
