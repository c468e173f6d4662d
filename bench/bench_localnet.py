"""The local Solana node's cost: transactions per second through its JSON-RPC.

Sends pre-signed System transfers to ``machpay-localnet`` (started on a free
port) with ``sendTransaction`` (preflight on: simulate, then execute, as a
validator does), one HTTP request per transaction, from this process.

Baseline measured in the same run: the same transfers executed in-process by
solders' LiteSVM (the same runtime family, release-built, no RPC, no slots).
The ratio is what the HTTP hop, the preflight simulation and the node's
bookkeeping (a slot per transaction, history, balances) cost on top of the
bare runtime. A second ratio sets the same rate against bare requests
(``getHealth``): how much of a transaction's time is HTTP alone.

``MACHPAY_BENCH_RPC_URL`` points it at a running endpoint instead; builds go
to ``MACHPAY_BENCH_CARGO_TARGET`` (default: $MACHPAY_CACHE/cargo-target).
"""

from __future__ import annotations

import base64

import httpx
from solders.hash import Hash
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from bench.harness import Figure, local_solana, median, record

BATCH = 100
"""Transfers signed per blockhash (it stays valid for 150 slots)."""
ROUNDS = 5
HEALTH_CALLS = 300


def _transfers(
    payer: Keypair, to: Pubkey, blockhash: Hash, start: int
) -> list[VersionedTransaction]:
    return [
        VersionedTransaction(
            Message.new_with_blockhash(
                [
                    transfer(
                        TransferParams(
                            from_pubkey=payer.pubkey(), to_pubkey=to, lamports=1_000_000 + start + i
                        )
                    )
                ],
                payer.pubkey(),
                blockhash,
            ),
            [payer],
        )
        for i in range(BATCH)
    ]


def _rpc(http: httpx.Client, url: str, method: str, params: list[object]) -> object:
    reply = http.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    ).json()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def node_rate(url: str) -> list[float]:
    import time

    rates = []
    with httpx.Client(timeout=30) as http:
        payer = Keypair()
        _rpc(http, url, "requestAirdrop", [str(payer.pubkey()), 1_000 * 10**9])
        to = Keypair().pubkey()
        for r in range(ROUNDS):
            latest = _rpc(http, url, "getLatestBlockhash", [])
            assert isinstance(latest, dict)
            txs = _transfers(payer, to, Hash.from_string(latest["value"]["blockhash"]), r * BATCH)
            encoded = [base64.b64encode(bytes(tx)).decode() for tx in txs]
            start = time.perf_counter()
            for tx in encoded:
                _rpc(http, url, "sendTransaction", [tx, {"encoding": "base64"}])
            rates.append(BATCH / (time.perf_counter() - start))
    return rates


def in_process_rate() -> list[float]:
    import time

    svm = LiteSVM()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 1_000 * 10**9)
    to = Keypair().pubkey()
    rates = []
    for r in range(ROUNDS):
        txs = _transfers(payer, to, svm.latest_blockhash(), r * BATCH)
        start = time.perf_counter()
        for tx in txs:
            svm.send_transaction(tx)
        rates.append(BATCH / (time.perf_counter() - start))
        svm.expire_blockhash()
    return rates


def health_rate(url: str) -> list[float]:
    import time

    rates = []
    with httpx.Client(timeout=30) as http:
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for _ in range(HEALTH_CALLS):
                _rpc(http, url, "getHealth", [])
            rates.append(HEALTH_CALLS / (time.perf_counter() - start))
    return rates


def main() -> None:
    baseline = in_process_rate()
    with local_solana("localnet") as url:
        sent = node_rate(url)
        health = health_rate(url)
    base = median(baseline)
    record(
        "localnet",
        [
            Figure(
                "transfers/s via sendTransaction (preflight on)",
                median(sent),
                "tx/s",
                baseline="in-process LiteSVM (solders)",
                baseline_value=base,
                runs=sent,
            ),
            Figure(
                "transfers/s via sendTransaction vs bare requests",
                median(sent),
                "tx/s",
                baseline="getHealth requests/s (HTTP + JSON-RPC only)",
                baseline_value=median(health),
                runs=sent,
            ),
        ],
        "python -m bench localnet",
    )


if __name__ == "__main__":
    main()
