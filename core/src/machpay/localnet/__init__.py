"""A local Solana JSON-RPC node running the MachPay programs (see node.py)."""
