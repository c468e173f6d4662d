"""MachPay ingest component."""
