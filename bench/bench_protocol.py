"""Protocol core throughput against raw PyNaCl (libsodium) in the same run.

Figures: intents signed/s and strictly verified/s per core, each as a ratio of
raw libsodium sign/verify over the same 97-byte messages; RFC 6962 root time
for 100k leaves; SignedIntent parse rate. Target (QUALITY.md): strict verify
>= 90 % of raw libsodium. Strict verification computes the group equation with
ed25519-dalek (solders); the same checks with libsodium computing it are
measured too, so the choice stays justified by a same-run figure.
"""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium

from bench.harness import Figure, median, rate, record, seconds
from machpay.protocol import (
    Intent,
    Keypair,
    SignedIntent,
    address_to_bytes,
    channel_address,
    merkle_root,
    sign_intent,
    verify_strict,
)
from machpay.protocol.signing import verify_strict_libsodium

N = 2_000


def _intents(keypair: Keypair) -> list[Intent]:
    channel = channel_address(
        program_id=address_to_bytes("MachPay111111111111111111111111111111111111"),
        agent=keypair.public,
        vendor=hashlib.sha256(b"bench-vendor").digest(),
    )
    return [
        Intent(
            domain=bytes(8),
            channel=channel,
            nonce=i,
            cumulative=(i + 1) * 100,
            amount=100,
            expires_at=2_000_000_000,
            context=hashlib.sha256(i.to_bytes(8, "little")).digest()[:16],
        )
        for i in range(N)
    ]


def main() -> None:
    keypair = Keypair.from_seed(hashlib.sha256(b"bench-agent").digest())
    intents = _intents(keypair)
    messages = [i.encode() for i in intents]
    sk = keypair.seed + keypair.public

    def raw_sign() -> int:
        for m in messages:
            sodium.crypto_sign(m, sk)
        return len(messages)

    def our_sign() -> int:
        for i in intents:
            sign_intent(i, keypair)
        return len(intents)

    signed = [sign_intent(i, keypair) for i in intents]
    triples = [(s.message, s.signature, s.agent) for s in signed]

    def raw_verify() -> int:
        for m, sig, pk in triples:
            sodium.crypto_sign_open(sig + m, pk)
        return len(triples)

    def strict_verify() -> int:
        for m, sig, pk in triples:
            verify_strict(m, sig, pk)
        return len(triples)

    def strict_verify_libsodium() -> int:
        for m, sig, pk in triples:
            verify_strict_libsodium(m, sig, pk)
        return len(triples)

    wire = [s.to_bytes() for s in signed]

    def parse() -> int:
        for b in wire:
            SignedIntent.from_bytes(b)
        return len(wire)

    leaves = [hashlib.sha256(i.to_bytes(8, "little")).digest() for i in range(100_000)]
    # Interleave runs of candidate and baseline so drift on a shared machine hits both.
    raw_s, our_s, raw_v, our_v, sodium_v = [], [], [], [], []
    for _ in range(5):
        raw_s += rate(raw_sign, repeat=1)
        our_s += rate(our_sign, repeat=1)
        raw_v += rate(raw_verify, repeat=1)
        our_v += rate(strict_verify, repeat=1)
        sodium_v += rate(strict_verify_libsodium, repeat=1)
    root_ms = [s * 1000 for s in seconds(lambda: merkle_root(leaves), repeat=5)]
    hash_rate = rate(lambda: len([hashlib.sha256(b) for b in leaves[:10_000]]), repeat=3)

    record(
        "protocol",
        [
            Figure(
                "intents signed/s (1 core)",
                median(our_s),
                "/s",
                "raw libsodium sign",
                median(raw_s),
                runs=our_s,
            ),
            Figure(
                "intents verified/s, strict (1 core)",
                median(our_v),
                "/s",
                "raw libsodium verify",
                median(raw_v),
                target=">= 0.90 of raw libsodium",
                runs=our_v,
            ),
            Figure(
                "intents verified/s, strict checks + libsodium equation (1 core)",
                median(sodium_v),
                "/s",
                "raw libsodium verify",
                median(raw_v),
                runs=sodium_v,
            ),
            Figure("SignedIntent parse + id", median(rate(parse)), "/s"),
            Figure(
                "RFC 6962 root, 100k leaves",
                median(root_ms),
                "ms",
                "2 SHA-256 per leaf at the same-run hash rate (ms)",
                2 * 100_000 / median(hash_rate) * 1000,
                runs=root_ms,
            ),
        ],
        command="python -m bench protocol",
    )
