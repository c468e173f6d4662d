"""The Ed25519 precompile instruction against the real precompile (solders LiteSVM).

LiteSVM runs Solana's own Ed25519 verifier with no program loaded, so these
tests show the bytes we build are what the runtime verifies: valid entries
pass, and a tampered signature, key, message or offset fails the transaction.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.instruction import Instruction
from solders.keypair import Keypair as SoldersKeypair
from solders.litesvm import LiteSVM
from solders.message import MessageV0
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

from machpay.protocol import Intent, Keypair, SignedIntent, sign_intent
from machpay.settle.precompile import (
    ED25519_PROGRAM_ID,
    ENTRY_LEN,
    HEADER_LEN,
    OFFSETS_LEN,
    THIS_INSTRUCTION,
    PrecompileError,
    SignedEntry,
    ed25519_instruction,
    parse_precompile,
    precompile_data,
)


def signed(i: int, cumulative: int = 100) -> SignedIntent:
    key = Keypair.from_seed(hashlib.sha256(b"precompile-test" + bytes([i])).digest())
    intent = Intent(
        domain=b"testtest",
        channel=hashlib.sha256(b"ch" + bytes([i])).digest(),
        nonce=i + 1,
        cumulative=cumulative,
        amount=1,
        expires_at=2**40,
        context=bytes(16),
    )
    return sign_intent(intent, key)


def entry(s: SignedIntent) -> SignedEntry:
    return SignedEntry(agent=s.agent, signature=s.signature, message=s.message)


@pytest.fixture(scope="module")
def svm() -> tuple[LiteSVM, SoldersKeypair]:
    vm = LiteSVM()
    payer = SoldersKeypair()
    vm.airdrop(payer.pubkey(), 10**12)
    return vm, payer


def run(vm_payer: tuple[LiteSVM, SoldersKeypair], ixs: list[Instruction]) -> bool:
    vm, payer = vm_payer
    vm.expire_blockhash()  # identical transactions would otherwise be refused as duplicates
    msg = MessageV0.try_compile(payer.pubkey(), ixs, [], vm.latest_blockhash())
    result = vm.send_transaction(VersionedTransaction(msg, [payer]))
    if isinstance(result, FailedTransactionMetadata):
        return False
    assert isinstance(result, TransactionMetadata)
    return True


@pytest.mark.parametrize("count", [1, 2, 4, 5])
def test_valid_entries_pass_the_real_precompile(
    svm: tuple[LiteSVM, SoldersKeypair], count: int
) -> None:
    entries = [entry(signed(i)) for i in range(count)]
    ix = ed25519_instruction(entries, THIS_INSTRUCTION)
    assert ix.program_id == ED25519_PROGRAM_ID
    assert len(ix.data) == HEADER_LEN + count * ENTRY_LEN
    assert run(svm, [ix])


def test_explicit_instruction_index_points_at_itself(svm: tuple[LiteSVM, SoldersKeypair]) -> None:
    """At position 1 (after another instruction) index 1 passes, index 0 points elsewhere."""
    entries = [entry(signed(i)) for i in range(2)]
    memo_like = ed25519_instruction([entry(signed(9))], THIS_INSTRUCTION)
    assert run(svm, [memo_like, ed25519_instruction(entries, 1)])
    assert not run(svm, [memo_like, ed25519_instruction(entries, 0)])


@settings(max_examples=25, deadline=None)
@given(
    count=st.integers(1, 4),
    victim=st.integers(0, 3),
    part=st.sampled_from(["agent", "signature", "message"]),
    bit=st.integers(0, 7),
    data=st.data(),
)
def test_any_tampered_byte_fails(
    svm: tuple[LiteSVM, SoldersKeypair],
    *,
    count: int,
    victim: int,
    part: str,
    bit: int,
    data: st.DataObject,
) -> None:
    victim %= count
    entries = [entry(signed(i)) for i in range(count)]
    raw = bytearray(precompile_data(entries, THIS_INSTRUCTION))
    base = HEADER_LEN + count * OFFSETS_LEN + victim * (ENTRY_LEN - OFFSETS_LEN)
    start, size = {"agent": (0, 32), "signature": (32, 64), "message": (96, 97)}[part]
    at = base + start + data.draw(st.integers(0, size - 1))
    raw[at] ^= 1 << bit
    assert not run(svm, [Instruction(ED25519_PROGRAM_ID, bytes(raw), [])])


def test_offsets_round_trip_and_point_at_each_entry() -> None:
    entries = [entry(signed(i)) for i in range(3)]
    parsed = parse_precompile(precompile_data(entries, 7))
    assert [e for _, e in parsed] == entries
    for i, (o, _) in enumerate(parsed):
        base = HEADER_LEN + 3 * OFFSETS_LEN + i * 193
        assert (o.public_key_offset, o.signature_offset, o.message_data_offset) == (
            base,
            base + 32,
            base + 96,
        )
        assert o.message_data_size == 97
        assert {
            o.signature_instruction_index,
            o.public_key_instruction_index,
            o.message_instruction_index,
        } == {7}


def test_bad_entries_are_named() -> None:
    good = entry(signed(0))
    with pytest.raises(PrecompileError, match=r"entries\[1\]\.message: 96 bytes"):
        precompile_data([good, SignedEntry(good.agent, good.signature, good.message[:-1])], 0)
    with pytest.raises(PrecompileError, match=r"need 1\.\.255"):
        precompile_data([], 0)
