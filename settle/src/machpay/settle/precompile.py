"""The Ed25519 precompile instruction that carries a settlement's vouchers.

One precompile instruction verifies K (signature, agent key, 97-byte intent)
entries; the MachPay program then reads it back through the instructions
sysvar and checks every offset strictly (docs/onchain.md). The layout here is
the one that contract prescribes:

    data = count(u8) || 0(u8)
        || K × offsets(14)          # Ed25519SignatureOffsets, in entry order
        || K × (agent(32) || signature(64) || message(97))

    offsets(i) = signature_offset(u16) signature_instruction_index(u16)
                 public_key_offset(u16) public_key_instruction_index(u16)
                 message_data_offset(u16) message_data_size(u16)
                 message_instruction_index(u16)

Every instruction index is the precompile instruction's own position in the
transaction (``instruction_index``; 0xFFFF, "this instruction", is also
accepted by the precompile but the program may require the explicit index).
Each entry costs 14 + 32 + 64 + 97 = 207 bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from solders.instruction import Instruction
from solders.pubkey import Pubkey

from machpay.protocol import MESSAGE_LEN

ED25519_PROGRAM_ID = Pubkey.from_string("Ed25519SigVerify111111111111111111111111111")
HEADER_LEN = 2
OFFSETS_LEN = 14
PUBKEY_LEN = 32
SIGNATURE_LEN = 64
ENTRY_LEN = OFFSETS_LEN + PUBKEY_LEN + SIGNATURE_LEN + MESSAGE_LEN
THIS_INSTRUCTION = 0xFFFF
MAX_ENTRIES = 255

_OFFSETS = struct.Struct("<HHHHHHH")
assert _OFFSETS.size == OFFSETS_LEN


class PrecompileError(ValueError):
    """An entry does not fit the precompile layout; names the entry and field."""


@dataclass(frozen=True, slots=True)
class SignedEntry:
    """One (agent key, signature, message) triple for the precompile to verify."""

    agent: bytes
    signature: bytes
    message: bytes


@dataclass(frozen=True, slots=True)
class EntryOffsets:
    signature_offset: int
    signature_instruction_index: int
    public_key_offset: int
    public_key_instruction_index: int
    message_data_offset: int
    message_data_size: int
    message_instruction_index: int


def entry_offsets(i: int, count: int, instruction_index: int) -> EntryOffsets:
    """Where entry ``i`` of ``count`` lives inside the precompile data."""
    base = HEADER_LEN + count * OFFSETS_LEN + i * (PUBKEY_LEN + SIGNATURE_LEN + MESSAGE_LEN)
    return EntryOffsets(
        signature_offset=base + PUBKEY_LEN,
        signature_instruction_index=instruction_index,
        public_key_offset=base,
        public_key_instruction_index=instruction_index,
        message_data_offset=base + PUBKEY_LEN + SIGNATURE_LEN,
        message_data_size=MESSAGE_LEN,
        message_instruction_index=instruction_index,
    )


def precompile_data(entries: Sequence[SignedEntry], instruction_index: int) -> bytes:
    """The instruction data for ``entries`` (see the module doc for the layout)."""
    count = len(entries)
    if not 1 <= count <= MAX_ENTRIES:
        raise PrecompileError(f"entries: need 1..{MAX_ENTRIES}, got {count}")
    if not 0 <= instruction_index <= THIS_INSTRUCTION:
        raise PrecompileError(f"instruction_index {instruction_index} is not a u16")
    head = bytearray((count, 0))
    body = bytearray()
    for i, entry in enumerate(entries):
        for name, value, size in (
            ("agent", entry.agent, PUBKEY_LEN),
            ("signature", entry.signature, SIGNATURE_LEN),
            ("message", entry.message, MESSAGE_LEN),
        ):
            if len(value) != size:
                raise PrecompileError(f"entries[{i}].{name}: {len(value)} bytes, expected {size}")
        o = entry_offsets(i, count, instruction_index)
        head += _OFFSETS.pack(
            o.signature_offset,
            o.signature_instruction_index,
            o.public_key_offset,
            o.public_key_instruction_index,
            o.message_data_offset,
            o.message_data_size,
            o.message_instruction_index,
        )
        body += entry.agent + entry.signature + entry.message
    data = bytes(head + body)
    assert len(data) == HEADER_LEN + count * ENTRY_LEN
    return data


def ed25519_instruction(entries: Sequence[SignedEntry], instruction_index: int) -> Instruction:
    """The precompile instruction (no accounts) verifying every entry."""
    return Instruction(ED25519_PROGRAM_ID, precompile_data(entries, instruction_index), [])


def parse_precompile(data: bytes) -> list[tuple[EntryOffsets, SignedEntry]]:
    """Read the offsets and the referenced bytes back (for tests and diagnostics).

    Only offsets that point into this same data can be resolved; others raise.
    """
    if len(data) < HEADER_LEN:
        raise PrecompileError("data shorter than the 2-byte header")
    count = data[0]
    out: list[tuple[EntryOffsets, SignedEntry]] = []
    for i in range(count):
        start = HEADER_LEN + i * OFFSETS_LEN
        if start + OFFSETS_LEN > len(data):
            raise PrecompileError(f"entry {i}: offsets run past the data")
        o = EntryOffsets(*_OFFSETS.unpack_from(data, start))

        def take(offset: int, size: int, what: str, index: int = i) -> bytes:
            if offset + size > len(data):
                raise PrecompileError(f"entry {index}: {what} runs past the data")
            return data[offset : offset + size]

        out.append(
            (
                o,
                SignedEntry(
                    agent=take(o.public_key_offset, PUBKEY_LEN, "public key"),
                    signature=take(o.signature_offset, SIGNATURE_LEN, "signature"),
                    message=take(o.message_data_offset, o.message_data_size, "message"),
                ),
            )
        )
    return out
