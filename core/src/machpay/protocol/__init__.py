"""The MachPay protocol core: payment intents, strict Ed25519, fraud rules, Merkle trees."""
