"""MachPay streams component."""
