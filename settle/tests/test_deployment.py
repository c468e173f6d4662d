"""The MachPay binding against the programs' real IDL: settle and proof transactions, events."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair as SoldersKeypair
from solders.pubkey import Pubkey

from machpay.protocol import Intent, Keypair, SignedIntent, detect_equivocation, sign_intent
from machpay.settle.idl import events_from_logs
from machpay.settle.precompile import ED25519_PROGRAM_ID, parse_precompile
from machpay.settle.programs import Deployment, default_idl_dir
from machpay.settle.records import ChainEventKind
from machpay.settle.transactions import MAX_TRANSACTION_BYTES, pack, sign

MACHPAY = "MachPay111111111111111111111111111111111111"
GBOND = "GBond11111111111111111111111111111111111111"
REGISTRY = "SvcReg1111111111111111111111111111111111111"
DOMAIN = bytes.fromhex("6c6f63616c6e6574")
VENDOR = hashlib.sha256(b"vendor").digest()
PAYER = SoldersKeypair.from_seed(bytes([7]) * 32)


def idl_dir() -> Path:
    """The programs' committed IDLs (programs/idl), which the codec is derived from."""
    folder = default_idl_dir()
    if not (folder / "machpay.json").exists():
        pytest.fail(f"{folder} has no machpay.json: the programs' IDLs are missing")
    return folder


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return Deployment.load(
        idl_dir(), machpay_id=MACHPAY, global_bond_id=GBOND, service_registry_id=REGISTRY
    )


def agent_key(i: int) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(b"agent" + bytes([i])).digest())


def voucher(dep: Deployment, i: int, *, nonce: int = 1, cumulative: int = 1000) -> SignedIntent:
    key = agent_key(i)
    intent = Intent(
        domain=DOMAIN,
        channel=bytes(dep.channel(key.public, VENDOR)),
        nonce=nonce,
        cumulative=cumulative,
        amount=1,
        expires_at=2**40,
        context=bytes(16),
    )
    return sign_intent(intent, key)


def test_settle_transaction_layout(deployment: Deployment) -> None:
    vouchers = [voucher(deployment, i) for i in range(3)]
    ixs = deployment.settle_instructions(
        payer=PAYER.pubkey(),
        vendor=VENDOR,
        root=bytes(32),
        leaf_count=3000,
        total=3000,
        vouchers=vouchers,
    )
    pre, settle = ixs
    assert pre.program_id == ED25519_PROGRAM_ID  # immediately before settle
    assert [e.message for _, e in parse_precompile(bytes(pre.data))] == [
        v.message for v in vouchers
    ]
    spec = deployment.machpay.instruction("settle")
    assert spec.decode_args(bytes(settle.data)) == {
        "root": bytes(32),
        "leaf_count": 3000,
        "total": 3000,
    }
    names = [a.name for a in spec.accounts]
    metas = list(settle.accounts)
    assert metas[names.index("settler")].pubkey == PAYER.pubkey()
    assert metas[names.index("settler")].is_signer
    assert metas[names.index("vendor")].pubkey == Pubkey(VENDOR)
    assert metas[names.index("config")].pubkey == deployment.config()
    pairs = metas[len(names) :]
    assert [(m.pubkey, m.is_writable) for m in pairs] == [
        x
        for v in vouchers
        for x in (
            (Pubkey(v.channel), True),
            (deployment.bond(v.agent), True),
        )
    ]


def test_four_channels_per_transaction_with_a_lookup_table(deployment: Deployment) -> None:
    vouchers = [voucher(deployment, i) for i in range(12)]

    def assemble(group: Sequence[SignedIntent]) -> list[Instruction]:
        return deployment.settle_instructions(
            payer=PAYER.pubkey(),
            vendor=VENDOR,
            root=bytes(32),
            leaf_count=len(group),
            total=len(group),
            vouchers=group,
        )

    addresses = [
        *deployment.fixed_addresses(),
        Pubkey(VENDOR),
        *deployment.per_channel_addresses(VENDOR, (v.agent for v in vouchers)),
    ]
    table = AddressLookupTableAccount(Pubkey.new_unique(), addresses)
    with_table = pack(
        vouchers, assemble, payer=PAYER.pubkey(), blockhash=Hash.default(), tables=[table]
    )
    without = pack(vouchers, assemble, payer=PAYER.pubkey(), blockhash=Hash.default())
    assert all(g.size <= MAX_TRANSACTION_BYTES for g in with_table + without)
    assert len(bytes(sign(with_table[0].message, PAYER))) == with_table[0].size
    assert [len(g.items) for g in with_table] == [4, 4, 4]
    assert [len(g.items) for g in without] == [2] * 6  # 7 fixed accounts spelt out


def test_proof_transaction(deployment: Deployment) -> None:
    a = voucher(deployment, 1, nonce=5, cumulative=10)
    b = voucher(deployment, 1, nonce=5, cumulative=11)
    proof = detect_equivocation(a, b)
    assert proof is not None
    treasury = Pubkey.new_unique()
    pre, ix = deployment.proof_instructions(proof, prover=PAYER.pubkey(), treasury=treasury)
    assert [e.message for _, e in parse_precompile(bytes(pre.data))] == [
        proof.first.message,
        proof.second.message,
    ]
    spec = deployment.machpay.instruction("prove_fraud")
    assert spec.decode_args(bytes(ix.data)) == {"kind": 1, "proof_id": proof.proof_id}
    names = [x.name for x in spec.accounts]
    metas = list(ix.accounts)
    assert metas[names.index("fraud_record")].pubkey == deployment.proof_record(proof.proof_id)
    assert metas[names.index("bond")].pubkey == deployment.bond(proof.agent)
    assert metas[names.index("treasury")].pubkey == treasury


def _log(program: Pubkey, payload: bytes) -> list[str]:
    return [
        f"Program {program} invoke [1]",
        "Program data: " + base64.b64encode(payload).decode(),
        f"Program {program} success",
    ]


def test_events_become_settlement_rows_and_chain_facts(deployment: Deployment) -> None:
    agent = agent_key(1).public
    channel = bytes(deployment.channel(agent, VENDOR))
    settled = deployment.machpay.events["BatchSettled"].encode(
        {
            "vendor": VENDOR,
            "batch_id": bytes([1]) * 32,
            "root": bytes(32),
            "leaf_count": 10,
            "total": 10,
            "paid": 7,
            "channels": [
                {
                    "channel": channel,
                    "agent": agent,
                    "nonce": 9,
                    "cumulative": 10,
                    "settled": 10,
                    "paid": 7,
                }
            ],
        }
    )
    deposited = deployment.global_bond.events["BondDeposited"].encode(
        {"agent": agent, "amount": 500, "balance": 500}
    )
    requested = deployment.global_bond.events["WithdrawalRequested"].encode(
        {"agent": agent, "amount": 100, "unlock_at": 1234}
    )
    logs = (
        _log(deployment.machpay.program_id, settled)
        + _log(deployment.global_bond.program_id, deposited)
        + _log(deployment.global_bond.program_id, requested)
    )
    events = events_from_logs(logs, deployment.programs)
    (row,) = deployment.settled_channels(events)
    assert (row.channel, row.agent, row.settled_cumulative, row.paid) == (channel, agent, 10, 7)
    facts = deployment.facts(events)
    assert [f.kind for f in facts] == [
        ChainEventKind.BATCH_SETTLED,
        ChainEventKind.BOND_DEPOSITED,
        ChainEventKind.WITHDRAW_REQUESTED,
    ]
    assert facts[0].account == channel
    assert facts[0].batch_id == bytes([1]) * 32
    assert facts[1].account == bytes(deployment.bond(agent))
    assert facts[1].amount == 500
    assert facts[2].unlock_at == 1234


def test_an_agent_insolvent_event_becomes_a_fact_with_the_vendor_of_its_batch(
    deployment: Deployment,
) -> None:
    agent, other = agent_key(1).public, agent_key(2).public
    short = bytes(deployment.channel(agent, VENDOR))
    covered = bytes(deployment.channel(other, VENDOR))
    # What one settle of a short bond logs: AgentInsolvent per short channel,
    # then BatchSettled listing every channel (docs/onchain.md §5).
    insolvent = deployment.machpay.events["AgentInsolvent"].encode(
        {"agent": agent, "channel": short, "owed": 5_000, "paid": 1_000}
    )
    settled = deployment.machpay.events["BatchSettled"].encode(
        {
            "vendor": VENDOR,
            "batch_id": bytes([2]) * 32,
            "root": bytes(32),
            "leaf_count": 2,
            "total": 5_010,
            "paid": 1_010,
            "channels": [
                {"channel": c, "agent": a, "nonce": 1, "cumulative": o, "settled": s, "paid": p}
                for c, a, o, s, p in (
                    (short, agent, 5_000, 1_000, 1_000),
                    (covered, other, 10, 10, 10),
                )
            ],
        }
    )
    logs = _log(deployment.machpay.program_id, insolvent) + _log(
        deployment.machpay.program_id, settled
    )
    facts = deployment.facts(events_from_logs(logs, deployment.programs))
    assert [f.kind for f in facts] == [
        ChainEventKind.AGENT_INSOLVENT,
        ChainEventKind.BATCH_SETTLED,
        ChainEventKind.BATCH_SETTLED,
    ]
    fact = facts[0]
    assert (fact.account, fact.agent, fact.vendor, fact.amount) == (short, agent, VENDOR, 4_000)
    # Without the BatchSettled (not expected from the program) the vendor is unknown, not guessed.
    alone = deployment.facts(
        events_from_logs(_log(deployment.machpay.program_id, insolvent), deployment.programs)
    )
    assert [(f.kind, f.vendor, f.amount) for f in alone] == [
        (ChainEventKind.AGENT_INSOLVENT, None, 4_000)
    ]
    # Another program logging the same bytes is not MachPay: no fact.
    forged = _log(deployment.global_bond.program_id, insolvent)
    assert deployment.facts(events_from_logs(forged, deployment.programs)) == []


def test_program_errors_are_named_from_the_idl(deployment: Deployment) -> None:
    logs = [
        f"Program {deployment.machpay.program_id} invoke [1]",
        "Program log: AnchorError occurred. Error Code: WrongDomain. Error Number: 6013.",
        f"Program {deployment.machpay.program_id} failed: custom program error: 0x177d",
    ]
    text = deployment.explain_error("InstructionError(1, Custom(6013))", logs)
    assert text.startswith("machpay.WrongDomain (6013)")
    assert "custom program error: 0x177d" in text
    # The same code in GlobalBond is another error: the failing program decides.
    bond_logs = [
        f"Program {deployment.global_bond.program_id} failed: custom program error: 0x1773"
    ]
    assert deployment.explain_error("custom program error: 0x1773", bond_logs).startswith(
        "global_bond.InsufficientBond (6003)"
    )
    assert deployment.explain_error("BlockhashNotFound") == "BlockhashNotFound"


def test_fixed_pdas_match_the_contract(deployment: Deployment) -> None:
    """docs/onchain.md §1 lists them; the settler derives the same from the IDL's seeds."""
    assert str(deployment.config()) == "DcsEX3TbGXNxwcigq1sCLe7s9BSgTyYnmu4UCXrT1uZs"
    assert str(deployment.bond_config()) == "3W6bAypcvXnGnCqgRXXFMdxBpLcHQCGW73nCQF8w6gpd"
    settle = deployment.machpay.instruction("settle")
    metas = settle.metas({"settler": Pubkey.default(), "vendor": Pubkey.default()}, {}, [])
    names = [a.name for a in settle.accounts]
    authority = metas[names.index("bond_authority")].pubkey
    assert str(authority) == "7ys6dd6BmbVK7c7u78JWYrPxiyu4MS2KuU2Z2CWfhpaq"
