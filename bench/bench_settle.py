"""Settlement cost on the real programs: channels per transaction, lamports per payment.

Runs the three programs in the local Solana runtime (``machpay-localnet``,
started on a free port), bonds AGENTS agents, has each make PAYMENTS signed
payments to one vendor (real intents; the channel settles with its latest
voucher, which covers all of them), and settles every channel the way the
settler does: vouchers packed into measured v0 transactions with a lookup
table. Fees are what the runtime charged (getTransaction meta.fee), never
computed; the one-time costs (channel rent, lookup table) are shown apart.

Baselines measured in the same run, on the same runtime:

* channels per transaction without a lookup table (a legacy-style message
  spelling every account out);
* x402 ``exact``: one transaction per payment; its cost is the fee the
  runtime charges for one signed transfer.

The Solana Foundation payment-channels program's ~5 channels per transaction
(50-byte vouchers) is a published reference, shown beside ours, not run here.

``MACHPAY_BENCH_RPC_URL`` points it at a running endpoint instead; builds go
to ``MACHPAY_BENCH_CARGO_TARGET`` (default: $MACHPAY_CACHE/cargo-target).
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import Sequence
from pathlib import Path

from solders.instruction import Instruction
from solders.keypair import Keypair as SoldersKeypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer

from bench.harness import Figure, local_solana, median, record
from machpay.config import load_settings
from machpay.protocol import Intent, Keypair, SignedIntent, sign_intent
from machpay.settle.bootstrap import Bootstrap, send_and_confirm
from machpay.settle.chain import Chain, TransactionInfo
from machpay.settle.idl import events_from_logs
from machpay.settle.lookup import LookupTables
from machpay.settle.service import load_deployment
from machpay.settle.transactions import pack, sign

AGENTS = 16
PAYMENTS = 1_000
PAYMENT_CHANNELS_PER_TX = 5
"""solana-foundation/payment-channels: ~5 settlements per transaction (published)."""
CHANNEL_ACCOUNT_BYTES = 121
ROUNDS = 3


def vouchers_for(
    agents: Sequence[Keypair], vendor: bytes, channel_of: dict[bytes, bytes], domain: bytes
) -> list[SignedIntent]:
    """PAYMENTS real signed payments per agent; the last of each channel is its voucher."""
    out = []
    for key in agents:
        last = None
        cumulative = 0
        for n in range(PAYMENTS):
            amount = 1 + n % 5
            cumulative += amount
            last = sign_intent(
                Intent(
                    domain=domain,
                    channel=channel_of[key.public],
                    nonce=n + 1,
                    cumulative=cumulative,
                    amount=amount,
                    expires_at=2**40,
                    context=bytes(16),
                ),
                key,
            )
        assert last is not None
        out.append(last)
    return out


async def one_round(url: str, work: Path, seed: int) -> dict[str, float]:
    settings = load_settings(environ={})
    deployment = load_deployment(settings)
    chain = Chain(url, "confirmed")
    payer = SoldersKeypair()
    boot = Bootstrap(chain, deployment, payer)
    try:
        await boot.set_up(
            domain=settings.deployment.domain,
            admin_lamports=1_000 * 10**9,
            treasury_lamports=1_000_000,
        )
        vendor = bytes(SoldersKeypair().pubkey())
        await boot.fund(Pubkey(vendor), 1_000_000)
        agents = [
            Keypair.from_seed(hashlib.sha256(f"bench-settle:{seed}:{i}".encode()).digest())
            for i in range(AGENTS)
        ]
        for key in agents:
            signer = SoldersKeypair.from_bytes(key.to_solana_bytes())
            await boot.fund(signer.pubkey(), 10**9)
            await boot.deposit(signer, 100_000_000)
        channel_of = {k.public: bytes(deployment.channel(k.public, vendor)) for k in agents}
        vouchers = vouchers_for(agents, vendor, channel_of, settings.deployment.domain)

        def assemble(group: Sequence[SignedIntent]) -> list[Instruction]:
            return deployment.settle_instructions(
                payer=payer.pubkey(),
                vendor=vendor,
                root=bytes(32),
                leaf_count=PAYMENTS * len(group),
                total=sum(v.cumulative for v in group),
                vouchers=group,
            )

        tables = LookupTables(chain, payer, work / f"tables-{seed}.json")
        wanted = [
            *deployment.fixed_addresses(),
            Pubkey(vendor),
            *deployment.per_channel_addresses(vendor, channel_of),
        ]
        before_tables = await chain.balance(payer.pubkey())
        await tables.ensure(wanted)
        table_cost = before_tables - await chain.balance(payer.pubkey())

        blockhash, _ = await chain.latest_blockhash()
        plain = pack(vouchers, assemble, payer=payer.pubkey(), blockhash=blockhash)
        groups = pack(
            vouchers,
            assemble,
            payer=payer.pubkey(),
            blockhash=blockhash,
            tables=tables.accounts_for(wanted),
        )
        fees = 0
        paid = 0
        before = await chain.balance(payer.pubkey())
        for g in groups:
            info = await _send(chain, payer, g.message)
            fees += info.fee
            rows = deployment.settled_channels(events_from_logs(info.logs, deployment.programs))
            paid += sum(r.paid for r in rows)
        spent = before - await chain.balance(payer.pubkey())
        assert paid == sum(v.cumulative for v in vouchers), "settlement did not pay the vouchers"
        rent_per_channel = (spent - fees) / AGENTS
        # Baseline: x402 exact, one signed transaction per payment (a plain transfer).
        x402 = await send_and_confirm(
            chain,
            payer,
            [
                transfer(
                    TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Pubkey(vendor), lamports=1)
                )
            ],
        )
        return {
            "per_tx": len(vouchers) / len(groups),
            "per_tx_plain": len(vouchers) / len(plain),
            "max_size": max(g.size for g in groups),
            "fee_per_tx": fees / len(groups),
            "lamports_per_payment": fees / (AGENTS * PAYMENTS),
            "x402_per_payment": float(x402.fee),
            "rent_per_channel": rent_per_channel,
            "rent_exempt_121": float(await chain.rent_exempt(CHANNEL_ACCOUNT_BYTES)),
            "table_cost": float(table_cost),
        }
    finally:
        await chain.close()


async def _send(chain: Chain, payer: SoldersKeypair, message: MessageV0) -> TransactionInfo:
    """The packed message as measured (with its lookup table), sent and confirmed."""
    tx = sign(message, payer)
    signature = await chain.send(tx)
    for _ in range(400):
        (status,) = await chain.statuses([signature])
        if status is not None and status.reached(chain.commitment):
            info = await chain.transaction(signature)
            if info is not None:
                if info.err is not None:
                    raise RuntimeError(f"settle failed: {info.err}: {info.logs}")
                return info
        await asyncio.sleep(0.05)
    raise TimeoutError(signature)


def main() -> None:
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as work, local_solana("settle") as url:
        for seed in range(ROUNDS):
            runs.append(asyncio.run(one_round(url, Path(work), seed)))

    def col(key: str) -> list[float]:
        return [r[key] for r in runs]

    per_tx = median(col("per_tx"))
    lpp = median(col("lamports_per_payment"))
    record(
        "settle",
        [
            Figure(
                "channel settlements per transaction (v0 + lookup table)",
                per_tx,
                "/tx",
                "same settle without a lookup table",
                median(col("per_tx_plain")),
                target=">= 4",
                runs=col("per_tx"),
            ),
            Figure(
                "channel settlements per transaction vs payment-channels (published ~5)",
                per_tx,
                "/tx",
                "payment-channels (reference, not run)",
                float(PAYMENT_CHANNELS_PER_TX),
                runs=col("per_tx"),
            ),
            Figure(
                "largest settle transaction",
                median(col("max_size")),
                "bytes",
                target="<= 1,232",
                runs=col("max_size"),
            ),
            Figure(
                f"fee lamports per payment at {PAYMENTS:,} payments/channel (meta.fee)",
                lpp,
                "lamports",
                target="<= 2",
                runs=col("lamports_per_payment"),
            ),
            Figure(
                "x402 exact fee per payment (one transfer tx each, meta.fee) vs ours",
                median(col("x402_per_payment")),
                "lamports",
                "MachPay fee per payment",
                lpp,
                runs=col("x402_per_payment"),
            ),
            Figure(
                "fee per settle transaction (meta.fee)",
                median(col("fee_per_tx")),
                "lamports",
                runs=col("fee_per_tx"),
            ),
            Figure(
                "one-time channel rent per channel (paid by the settler)",
                median(col("rent_per_channel")),
                "lamports",
                f"rent-exempt minimum, {CHANNEL_ACCOUNT_BYTES} bytes",
                median(col("rent_exempt_121")),
                runs=col("rent_per_channel"),
            ),
            Figure(
                f"one-time lookup table for {AGENTS} channels (rent + fees)",
                median(col("table_cost")),
                "lamports",
                runs=col("table_cost"),
            ),
        ],
        command="python -m bench settle",
    )
