"""Avro wire codec with Confluent framing, and the schema-id registry."""
