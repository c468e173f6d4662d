"""MachPay benchmarks. Run with `make bench` (or `python -m bench [NAME...]`)."""
