"""`machpay demo`: the whole product on one machine, shown end to end.

A real Kafka broker and a local Solana runtime with the three programs,
vendor gateways in front of a small API, agents paying through the SDK, the
stream workers, and the settler; then a report of what every component saw
and what moved on-chain. Each service runs as its own `machpay …` process,
as it would in production.
"""
