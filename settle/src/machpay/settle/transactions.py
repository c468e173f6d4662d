"""Version-0 transactions: assembly, the measured size, and packing vouchers into as few as fit.

Solana refuses a transaction whose wire form exceeds 1,232 bytes (the IPv6
MTU minus headers). How many channel settlements fit depends on the exact
instructions, the accounts (32 bytes each, or 1 byte through a lookup table)
and the signatures, so the packer never guesses: it compiles the real message
for each candidate set of vouchers and measures the serialized transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

__all__ = [
    "MAX_TRANSACTION_BYTES",
    "PackError",
    "Packed",
    "budget_instructions",
    "compile_message",
    "pack",
    "serialized_size",
    "sign",
]

MAX_TRANSACTION_BYTES = 1232
T = TypeVar("T")

Assemble = Callable[[Sequence[T]], list[Instruction]]
"""Builds every instruction of one transaction for a group of items (in order)."""


class PackError(ValueError):
    """A single item does not fit in a transaction on its own."""


def budget_instructions(unit_limit: int, unit_price: int) -> list[Instruction]:
    """ComputeBudget instructions (none when both are 0: the runtime defaults apply)."""
    out: list[Instruction] = []
    if unit_limit:
        out.append(set_compute_unit_limit(unit_limit))
    if unit_price:
        out.append(set_compute_unit_price(unit_price))
    return out


def compile_message(
    payer: Pubkey,
    instructions: Sequence[Instruction],
    blockhash: Hash,
    tables: Sequence[AddressLookupTableAccount] = (),
) -> MessageV0:
    return MessageV0.try_compile(payer, list(instructions), list(tables), blockhash)


def serialized_size(message: MessageV0) -> int:
    """Bytes of the signed transaction on the wire (signatures are fixed-size)."""
    signers = message.header.num_required_signatures
    tx = VersionedTransaction.populate(message, [Signature.default()] * signers)
    return len(bytes(tx))


def sign(message: MessageV0, payer: Keypair) -> VersionedTransaction:
    return VersionedTransaction(message, [payer])


@dataclass(frozen=True, slots=True)
class Packed(Generic[T]):
    """One transaction's worth of items, with its compiled message and measured size."""

    items: tuple[T, ...]
    message: MessageV0
    size: int


def pack(
    items: Sequence[T],
    assemble: Assemble[T],
    *,
    payer: Pubkey,
    blockhash: Hash,
    tables: Sequence[AddressLookupTableAccount] = (),
    max_per_tx: int = 0,
    max_bytes: int = MAX_TRANSACTION_BYTES,
) -> list[Packed[T]]:
    """Split ``items`` (order kept) into consecutive groups whose transactions fit.

    Greedy and exact: a group grows while its compiled, serialized transaction
    stays within ``max_bytes`` (and ``max_per_tx`` when set). The size only grows
    with the group, so the first item that does not fit starts the next group.
    """
    groups: list[Packed[T]] = []
    current: list[T] = []
    best: Packed[T] | None = None
    for item in items:
        candidate = [*current, item]
        fits = False
        if not max_per_tx or len(candidate) <= max_per_tx:
            message = compile_message(payer, assemble(candidate), blockhash, tables)
            size = serialized_size(message)
            fits = size <= max_bytes
        if fits:
            current, best = candidate, Packed(tuple(candidate), message, size)
            continue
        if best is None:
            raise PackError(f"one item alone does not fit in {max_bytes} bytes: {item!r}")
        groups.append(best)
        message = compile_message(payer, assemble([item]), blockhash, tables)
        size = serialized_size(message)
        if size > max_bytes:
            raise PackError(f"one item alone takes {size} bytes (> {max_bytes}): {item!r}")
        current, best = [item], Packed((item,), message, size)
    if best is not None:
        groups.append(best)
    return groups
