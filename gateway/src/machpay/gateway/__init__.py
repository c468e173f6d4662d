"""MachPay gateway component."""
