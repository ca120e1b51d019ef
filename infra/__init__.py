"""Local infrastructure: a single-node Apache Kafka broker (KRaft) resolved with Maven."""
