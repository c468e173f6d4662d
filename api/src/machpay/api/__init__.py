"""MachPay api component."""
