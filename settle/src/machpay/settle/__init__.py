"""MachPay settle component."""
