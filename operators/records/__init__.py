"""Wire records: one record type and its codec per Kafka topic."""
