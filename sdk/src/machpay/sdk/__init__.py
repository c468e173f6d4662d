"""MachPay sdk component."""
