"""Kafka client helpers and the local single-node broker used by the demo and the tests."""
