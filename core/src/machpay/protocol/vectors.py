"""Generate the shared test vectors in ``schemas/vectors`` from fixed seeds.

    python -m machpay.protocol.vectors [--out schemas/vectors] [--check]

The Rust programs and every Python component test against these files, so
they are generated, committed, and checked for drift (``--check`` exits 1
and names the file if the committed copy differs from what this produces).
Everything is deterministic: keys come from SHA-256 of fixed labels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machpay.protocol.errors import ProtocolError, Reason
from machpay.protocol.fraud import FraudProof, ProofKind, detect_fraud
from machpay.protocol.intent import (
    MAGIC,
    NATIVE_SOL,
    U64_MAX,
    Intent,
    SignedIntent,
    context_hash,
    find_channel,
    request_hash,
    sign_intent,
    verify_intent,
)
from machpay.protocol.keys import Keypair, address_to_bytes
from machpay.protocol.merkle import MerkleTree, merkle_root
from machpay.protocol.signing import SMALL_ORDER_Y, L, P, is_on_curve

PROGRAM_ID = "MachPay111111111111111111111111111111111111"
DOMAIN = b"mp-test1"
OTHER_DOMAIN = b"mp-test2"
NOW = 1_800_000_000
EXPIRES_AT = 1_800_000_600

Json = dict[str, Any]


def seed_for(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def agent(i: int) -> Keypair:
    return Keypair.from_seed(seed_for(f"machpay-test-agent-{i}"))


def vendor(i: int) -> Keypair:
    return Keypair.from_seed(seed_for(f"machpay-test-vendor-{i}"))


#: A stand-in SPL mint (any 32 bytes work as a PDA seed).
TEST_MINT = seed_for("machpay-test-asset-mint")


def _program() -> bytes:
    return address_to_bytes(PROGRAM_ID)


def _channel(agent_index: int, vendor_index: int, asset: bytes = NATIVE_SOL) -> bytes:
    return find_channel(
        program_id=_program(),
        agent=agent(agent_index).public,
        vendor=vendor(vendor_index).public,
        asset=asset,
    )[0]


def _context(label: str) -> bytes:
    return context_hash("test-service", request_hash("GET", "/v1/" + label, "", b""), b"c" * 16)


def _intent(
    agent_index: int = 0,
    vendor_index: int = 0,
    *,
    nonce: int,
    cumulative: int,
    amount: int,
    domain: bytes = DOMAIN,
    context: bytes | None = None,
    expires_at: int = EXPIRES_AT,
) -> SignedIntent:
    intent = Intent(
        domain=domain,
        channel=_channel(agent_index, vendor_index),
        nonce=nonce,
        cumulative=cumulative,
        amount=amount,
        expires_at=expires_at,
        context=context if context is not None else _context(f"n{nonce}"),
    )
    return sign_intent(intent, agent(agent_index))


def _key_json(keypair: Keypair) -> Json:
    return {"seed": keypair.seed.hex(), "public": keypair.public.hex(), "address": keypair.address}


def _signed_json(signed: SignedIntent) -> Json:
    return {
        "message": signed.message.hex(),
        "signature": signed.signature.hex(),
        "agent": signed.agent.hex(),
        "id": signed.id.hex(),
    }


# --- intents.json -------------------------------------------------------------------------


def _valid_intent_cases() -> list[Json]:
    cases: list[Json] = []
    specs: list[tuple[str, int, int, bytes, dict[str, Any]]] = [
        (
            "first_call_native_sol",
            0,
            0,
            NATIVE_SOL,
            {
                "nonce": 0,
                "cumulative": 1000,
                "amount": 1000,
                "expires_at": EXPIRES_AT,
                "req": ("GET", "/v1/quote", "symbol=SOL&side=buy", b""),
            },
        ),
        (
            "second_call_same_channel",
            0,
            0,
            NATIVE_SOL,
            {
                "nonce": 1,
                "cumulative": 1500,
                "amount": 500,
                "expires_at": EXPIRES_AT,
                "req": ("POST", "/v1/complete", "", b'{"prompt":"hello"}'),
            },
        ),
        (
            "other_vendor_spl_mint",
            0,
            1,
            TEST_MINT,
            {
                "nonce": 2,
                "cumulative": 1,
                "amount": 1,
                "expires_at": EXPIRES_AT,
                "req": ("put", "/caf\u00e9/x y", "a=1&a=2&b", b"\x00\x01\x02"),
            },
        ),
        (
            "other_agent_extremes",
            1,
            0,
            NATIVE_SOL,
            {
                "nonce": U64_MAX,
                "cumulative": U64_MAX,
                "amount": U64_MAX,
                "expires_at": 2**63 - 1,
                "req": ("DELETE", "/", "", b""),
            },
        ),
        (
            "negative_expiry",
            1,
            1,
            NATIVE_SOL,
            {
                "nonce": 7,
                "cumulative": 2**40,
                "amount": 3,
                "expires_at": -(2**63),
                "req": ("GET", "/v1/quote", "", b""),
            },
        ),
    ]
    for name, a, v, asset, spec in specs:
        channel, bump = find_channel(
            program_id=_program(), agent=agent(a).public, vendor=vendor(v).public, asset=asset
        )
        method, path, query, body = spec["req"]
        req = request_hash(method, path, query, body)
        challenge = seed_for(f"challenge-{name}")[: 8 + a * 8]
        ctx = context_hash("test-service", req, challenge)
        intent = Intent(
            domain=DOMAIN,
            channel=channel,
            nonce=spec["nonce"],
            cumulative=spec["cumulative"],
            amount=spec["amount"],
            expires_at=spec["expires_at"],
            context=ctx,
        )
        signed = sign_intent(intent, agent(a))
        cases.append(
            {
                "name": name,
                "agent_index": a,
                "vendor_index": v,
                "asset": asset.hex(),
                "channel": channel.hex(),
                "channel_bump": bump,
                "service": "test-service",
                "request": {
                    "method": method,
                    "path": path,
                    "query": query,
                    "body": body.hex(),
                    "request_hash": req.hex(),
                },
                "challenge": challenge.hex(),
                "fields": {
                    "domain": intent.domain.hex(),
                    "channel": intent.channel.hex(),
                    "nonce": intent.nonce,
                    "cumulative": intent.cumulative,
                    "amount": intent.amount,
                    "expires_at": intent.expires_at,
                    "context": intent.context.hex(),
                },
                **_signed_json(signed),
            }
        )
    return cases


def intents_vectors() -> Json:
    return {
        "description": "Valid v1 payment intents signed by fixed test keys.",
        "program_id": PROGRAM_ID,
        "program_id_hex": _program().hex(),
        "domain": DOMAIN.hex(),
        "agents": [_key_json(agent(i)) for i in range(2)],
        "vendors": [_key_json(vendor(i)) for i in range(2)],
        "mint": TEST_MINT.hex(),
        "intents": _valid_intent_cases(),
    }


# --- invalid_signatures.json --------------------------------------------------------------


def _encode_point(y: int, sign: int = 0) -> bytes:
    return (y | (sign << 255)).to_bytes(32, "little")


def _small_order_encodings() -> list[tuple[str, bytes]]:
    """Every 32-byte spelling of a point of order dividing 8."""
    named = {0: "order4_y0", 1: "identity", P - 1: "order2"}
    out: list[tuple[str, bytes]] = []
    for y in sorted(SMALL_ORDER_Y):
        label = named.get(y, f"order8_y{str(y)[:6]}")
        out.append((label, _encode_point(y)))
        out.append((label + "_sign", _encode_point(y, 1)))
        if y + P < 2**255:  # only 0 and 1 have a non-canonical y spelling
            out.append((label + "_noncanonical", _encode_point(y + P)))
            out.append((label + "_noncanonical_sign", _encode_point(y + P, 1)))
    return out


def _secret_scalar(keypair: Keypair) -> int:
    h = bytearray(hashlib.sha512(keypair.seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return int.from_bytes(h, "little")


def _cofactored_signature(keypair: Keypair, message: bytes, r: bytes) -> bytes:
    """S = k·a with a small-order R: passes cofactored (8·) verification, and
    for R = identity even plain cofactorless verification. Strict must refuse."""
    k = int.from_bytes(hashlib.sha512(r + keypair.public + message).digest(), "little") % L
    s = k * _secret_scalar(keypair) % L
    return r + s.to_bytes(32, "little")


def _first_y(predicate: Callable[[int], bool], start: int) -> int:
    y = start
    while not predicate(y):
        y += 1
    return y


def _raw_message(**overrides: Any) -> bytes:
    """A message built by hand, so that invalid field values can be spelt."""
    base = _intent(nonce=42, cumulative=5000, amount=100).intent
    fields = {
        "magic": MAGIC,
        "version": 1,
        "domain": base.domain,
        "channel": base.channel,
        "nonce": base.nonce,
        "cumulative": base.cumulative,
        "amount": base.amount,
        "expires_at": base.expires_at,
        "context": base.context,
    }
    fields.update(overrides)
    return struct.pack(
        "<8sB8s32sQQQq16s",
        fields["magic"],
        fields["version"],
        fields["domain"],
        fields["channel"],
        fields["nonce"],
        fields["cumulative"],
        fields["amount"],
        fields["expires_at"],
        fields["context"],
    )


#: What each case is *meant* to produce, written down independently of the code:
#: the generator refuses to write a file where the implementation disagrees.
_EXPECTED: dict[str, tuple[Reason, str] | None] = {
    "valid": None,
    "valid_at_expiry": None,
    "s_plus_l": (Reason.NON_CANONICAL_SIGNATURE, "signature"),
    "s_all_ones": (Reason.NON_CANONICAL_SIGNATURE, "signature"),
    "small_order_key_": (Reason.SMALL_ORDER_KEY, "agent"),
    "small_order_r_": (Reason.SMALL_ORDER_R, "signature"),
    "non_canonical_r": (Reason.NON_CANONICAL_SIGNATURE, "signature"),
    "non_canonical_key": (Reason.NON_CANONICAL_KEY, "agent"),
    "key_not_on_curve": (Reason.INVALID_KEY, "agent"),
    "tampered_amount": (Reason.BAD_SIGNATURE, "signature"),
    "flipped_s_bit": (Reason.BAD_SIGNATURE, "signature"),
    "wrong_key": (Reason.BAD_SIGNATURE, "signature"),
    "wrong_domain": (Reason.WRONG_DOMAIN, "domain"),
    "expired": (Reason.EXPIRED, "expires_at"),
    "truncated_message": (Reason.BAD_LENGTH, "message"),
    "long_message": (Reason.BAD_LENGTH, "message"),
    "truncated_signature": (Reason.BAD_LENGTH, "signature"),
    "truncated_key": (Reason.BAD_LENGTH, "agent"),
    "bad_magic": (Reason.BAD_MAGIC, "magic"),
    "bad_version": (Reason.UNSUPPORTED_VERSION, "version"),
    "amount_zero": (Reason.AMOUNT_OUT_OF_RANGE, "amount"),
    "amount_above_cumulative": (Reason.AMOUNT_OUT_OF_RANGE, "amount"),
}


def _expected(name: str) -> Json:
    # Exact names first, then the families ("small_order_key_<point>").
    key = (
        name
        if name in _EXPECTED
        else next(p for p in _EXPECTED if p.endswith("_") and name.startswith(p))
    )
    want = _EXPECTED[key]
    return (
        {"reason": None, "field": None}
        if want is None
        else {"reason": want[0].value, "field": want[1]}
    )


def _evaluate(
    name: str, message: bytes, signature: bytes, key: bytes, *, domain: bytes, now: int
) -> Json:
    try:
        verify_intent(message, signature, key, domain=domain, now=now)
        got: Json = {"reason": None, "field": None}
    except ProtocolError as exc:
        got = {"reason": exc.reason.value, "field": exc.field}
    want = _expected(name)
    if got != want:
        raise RuntimeError(f"vector {name}: implementation gives {got}, intended {want}")
    return want


def invalid_signature_vectors() -> Json:
    kp = agent(0)
    good = _intent(nonce=42, cumulative=5000, amount=100)
    msg, sig, pub = good.message, good.signature, good.agent
    s = int.from_bytes(sig[32:], "little")
    cases: list[tuple[str, str, bytes, bytes, bytes, bytes, int]] = [
        ("valid", "the untouched intent: accepted", msg, sig, pub, DOMAIN, NOW),
        (
            "valid_at_expiry",
            "now == expires_at is still in time",
            msg,
            sig,
            pub,
            DOMAIN,
            EXPIRES_AT,
        ),
        (
            "s_plus_l",
            "S replaced by S+L: verifies under lax rules, malleable",
            msg,
            sig[:32] + (s + L).to_bytes(32, "little"),
            pub,
            DOMAIN,
            NOW,
        ),
        (
            "s_all_ones",
            "S = 2^256-1",
            msg,
            sig[:32] + b"\xff" * 32,
            pub,
            DOMAIN,
            NOW,
        ),
    ]
    for label, encoded in _small_order_encodings():
        cases.append(
            (
                f"small_order_key_{label}",
                "small-order public key with R = identity, S = 0 "
                "(the identity key makes this verify under lax rules)",
                msg,
                _encode_point(1) + bytes(32),
                encoded,
                DOMAIN,
                NOW,
            )
        )
    for label, encoded in _small_order_encodings():
        if label.endswith("_sign") or "noncanonical" in label:
            continue
        cases.append(
            (
                f"small_order_r_{label}",
                "R small-order with S = k·a: passes cofactored verification "
                "(and cofactorless for R = identity)",
                msg,
                _cofactored_signature(kp, msg, encoded),
                pub,
                DOMAIN,
                NOW,
            )
        )
    non_canonical_y = _first_y(lambda y: y % P not in SMALL_ORDER_Y, P)
    off_curve_y = _first_y(
        lambda y: y not in SMALL_ORDER_Y and not is_on_curve(_encode_point(y)), 2
    )
    cases += [
        (
            "non_canonical_r",
            "R's y-coordinate is >= p",
            msg,
            _encode_point(non_canonical_y) + sig[32:],
            pub,
            DOMAIN,
            NOW,
        ),
        (
            "non_canonical_key",
            "public key y-coordinate >= p (not small order)",
            msg,
            sig,
            _encode_point(non_canonical_y),
            DOMAIN,
            NOW,
        ),
        (
            "key_not_on_curve",
            "public key y has no matching x",
            msg,
            sig,
            _encode_point(off_curve_y),
            DOMAIN,
            NOW,
        ),
        (
            "tampered_amount",
            "amount changed after signing",
            _raw_message(amount=101),
            sig,
            pub,
            DOMAIN,
            NOW,
        ),
        (
            "flipped_s_bit",
            "lowest bit of S flipped",
            msg,
            sig[:32] + bytes((sig[32] ^ 1,)) + sig[33:],
            pub,
            DOMAIN,
            NOW,
        ),
        (
            "wrong_key",
            "signed by agent 0, presented as agent 1",
            msg,
            sig,
            agent(1).public,
            DOMAIN,
            NOW,
        ),
        ("wrong_domain", "valid signature, other deployment", msg, sig, pub, OTHER_DOMAIN, NOW),
        ("expired", "now = expires_at + 1", msg, sig, pub, DOMAIN, EXPIRES_AT + 1),
        ("truncated_message", "96-byte message", msg[:-1], kp.sign(msg[:-1]), pub, DOMAIN, NOW),
        (
            "long_message",
            "98-byte message",
            msg + b"\x00",
            kp.sign(msg + b"\x00"),
            pub,
            DOMAIN,
            NOW,
        ),
        ("truncated_signature", "63-byte signature", msg, sig[:-1], pub, DOMAIN, NOW),
        ("truncated_key", "31-byte public key", msg, sig, pub[:-1], DOMAIN, NOW),
    ]
    for name, note, raw in (
        ("bad_magic", "magic 00MachPay, correctly signed", _raw_message(magic=b"\x00MachPay")),
        ("bad_version", "version 2, correctly signed", _raw_message(version=2)),
        ("amount_zero", "amount 0, correctly signed", _raw_message(amount=0)),
        (
            "amount_above_cumulative",
            "amount > cumulative, correctly signed",
            _raw_message(amount=5001),
        ),
    ):
        cases.append((name, note, raw, kp.sign(raw), pub, DOMAIN, NOW))
    return {
        "description": (
            "Presented (message, signature, agent) triples and the expected outcome of "
            "parse -> strict verify -> binding (domain, expiry at `now`). reason null = accepted. "
            "Every case with a crypto reason must also be rejected on-chain."
        ),
        "cases": [
            {
                "name": name,
                "description": note,
                "message": m.hex(),
                "signature": sg.hex(),
                "agent": k.hex(),
                "domain": d.hex(),
                "now": now,
                "expect": _evaluate(name, m, sg, k, domain=d, now=now),
            }
            for name, note, m, sg, k, d, now in cases
        ],
    }


# --- merkle.json --------------------------------------------------------------------------

#: The RFC 6962 leaf inputs used by Certificate Transparency's reference tests.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]


def _tree_json(name: str, leaves: list[bytes]) -> Json:
    sizes = []
    for size in range(len(leaves) + 1):
        tree = MerkleTree(leaves[:size])
        sizes.append(
            {
                "size": size,
                "root": merkle_root(leaves[:size]).hex(),
                "proofs": [[p.hex() for p in tree.proof(i)] for i in range(size)],
            }
        )
    return {"name": name, "leaves": [leaf.hex() for leaf in leaves], "trees": sizes}


def merkle_vectors() -> Json:
    batch = [seed_for(f"machpay-test-intent-{i}") for i in range(13)]
    return {
        "description": (
            "RFC 6962 trees over the first `size` leaves: root and the audit path "
            "(leaf sibling first) of every index. leaf = SHA-256(00||data), "
            "node = SHA-256(01||l||r)."
        ),
        "empty_root": merkle_root([]).hex(),
        "sets": [_tree_json("certificate_transparency", CT_LEAVES), _tree_json("batch_ids", batch)],
    }


# --- fraud.json ---------------------------------------------------------------------------


def _fraud_case(
    name: str, note: str, a: SignedIntent, b: SignedIntent, want: ProofKind | None = None
) -> Json:
    """``want`` is the intended verdict; the generator refuses to disagree with the code."""
    proof: FraudProof | None = detect_fraud(a, b)
    got = None if proof is None else proof.kind
    if got != want:
        raise RuntimeError(f"fraud vector {name}: detector gives {got}, intended {want}")
    expect: Json | None = None
    if proof is not None:
        expect = {
            "kind": proof.kind.name.lower(),
            "kind_byte": int(proof.kind),
            "first": "a" if proof.first is a else "b",
            "proof_id": proof.proof_id.hex(),
            "proof": proof.to_bytes().hex(),
        }
    return {
        "name": name,
        "description": note,
        "a": _signed_json(a),
        "b": _signed_json(b),
        "expect": expect,
    }


def fraud_vectors() -> Json:
    base = _intent(nonce=10, cumulative=100, amount=10)
    cases = [
        _fraud_case(
            "equivocation_cumulative",
            "nonce 10 signed twice with different cumulative",
            base,
            _intent(nonce=10, cumulative=110, amount=10),
            ProofKind.EQUIVOCATION,
        ),
        _fraud_case(
            "equivocation_other_vendor",
            "nonce 10 reused on another vendor's channel",
            _intent(0, 1, nonce=10, cumulative=7, amount=7),
            base,
            ProofKind.EQUIVOCATION,
        ),
        _fraud_case(
            "inconsistency_undercount",
            "nonce 11 has cumulative 105 < 100 + 10",
            base,
            _intent(nonce=11, cumulative=105, amount=10),
            ProofKind.CHANNEL_INCONSISTENCY,
        ),
        _fraud_case(
            "inconsistency_reversed_arrival",
            "later nonce seen first: same proof as above",
            _intent(nonce=11, cumulative=105, amount=10),
            base,
            ProofKind.CHANNEL_INCONSISTENCY,
        ),
        _fraud_case(
            "inconsistency_u64_overflow",
            "cumulative_a + amount_b overflows u64: still an offence (compare in u128)",
            _intent(nonce=20, cumulative=U64_MAX, amount=1),
            _intent(nonce=21, cumulative=5, amount=5),
            ProofKind.CHANNEL_INCONSISTENCY,
        ),
        _fraud_case(
            "honest_next_call",
            "nonce 11 with cumulative exactly 100 + 10",
            base,
            _intent(nonce=11, cumulative=110, amount=10),
        ),
        _fraud_case(
            "honest_gap",
            "nonce 15 over-counts (intermediate intents unseen): fine",
            base,
            _intent(nonce=15, cumulative=200, amount=10),
        ),
        _fraud_case(
            "honest_other_channel",
            "different channels are independent running totals",
            base,
            _intent(0, 1, nonce=11, cumulative=1, amount=1),
        ),
        _fraud_case(
            "honest_other_agent_same_nonce",
            "nonces are per agent",
            base,
            _intent(1, 0, nonce=10, cumulative=50, amount=5),
        ),
        _fraud_case(
            "honest_other_domain_same_nonce",
            "a deployment only judges intents addressed to it",
            base,
            _intent(nonce=10, cumulative=999, amount=9, domain=OTHER_DOMAIN),
        ),
        _fraud_case(
            "honest_duplicate", "the very same message twice is a replay, not fraud", base, base
        ),
    ]
    return {
        "description": (
            "Pairs of signed intents (a, b) and the proof they must (or must not) yield. "
            "proof = kind(1) || first(message||signature||agent) || second(...); "
            "proof_id = SHA-256('machpay:proof:v1' || kind || id_first || id_second)."
        ),
        "cases": cases,
    }


# --- files --------------------------------------------------------------------------------

GENERATORS: dict[str, Callable[[], Json]] = {
    "intents.json": intents_vectors,
    "invalid_signatures.json": invalid_signature_vectors,
    "merkle.json": merkle_vectors,
    "fraud.json": fraud_vectors,
}


def render(name: str) -> str:
    return json.dumps(GENERATORS[name](), indent=2) + "\n"


def drifted(out: Path) -> list[str]:
    """Names of the files under ``out`` that are missing or differ from the generator."""
    stale = []
    for name in GENERATORS:
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(name):
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m machpay.protocol.vectors", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("schemas/vectors"))
    parser.add_argument(
        "--check", action="store_true", help="compare with the files instead of writing"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    if args.check:
        stale = drifted(out)
        for name in stale:
            print(
                f"{out / name}: differs from the generator (regenerate and review)", file=sys.stderr
            )
        return 1 if stale else 0
    out.mkdir(parents=True, exist_ok=True)
    for name in GENERATORS:
        (out / name).write_text(render(name), encoding="utf-8")
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
