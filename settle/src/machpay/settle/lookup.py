"""Address lookup tables for the per-channel accounts (created and extended on-chain, cached).

A settlement names two accounts per channel (the channel PDA and the agent's
bond). Spelt out they cost 64 bytes per channel; through a lookup table one
index byte each, which is what lets a fourth voucher into the transaction.
Tables are created and extended by ordinary transactions of the Address
Lookup Table program, paid by the settler; their addresses are cached in
``settle.state_dir`` so a restart reuses them. An extension becomes usable
one slot after it lands, so :meth:`LookupTables.ensure` waits for the slot
to move on before handing the table out.

The program's instructions are bincode-encoded (u32 variant tag, then the
fields); solders ships the table account type and the address derivation
but no instruction builders, so the two used here are built by hand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

from solders.address_lookup_table_account import (
    ID as LOOKUP_TABLE_PROGRAM_ID,
)
from solders.address_lookup_table_account import (
    LOOKUP_TABLE_MAX_ADDRESSES,
    AddressLookupTable,
    AddressLookupTableAccount,
    derive_lookup_table_address,
)
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID

from machpay.settle.chain import Chain, TransactionRejectedError
from machpay.settle.transactions import compile_message, sign

__all__ = [
    "LOOKUP_TABLE_PROGRAM_ID",
    "LookupTables",
    "create_table_instruction",
    "extend_table_instruction",
]

log = logging.getLogger(__name__)

_CREATE = 0
_EXTEND = 2
SLOT_HASHES_SYSVAR = Pubkey.from_string("SysvarS1otHashes111111111111111111111111111")
EXTEND_CHUNK = 20
"""Addresses per extend transaction (32 bytes each; keeps it far below 1,232 bytes)."""


def create_table_instruction(
    authority: Pubkey, payer: Pubkey, recent_slot: int
) -> tuple[Instruction, Pubkey]:
    table, bump = derive_lookup_table_address(authority, recent_slot)
    data = struct.pack("<IQB", _CREATE, recent_slot, bump)
    metas = [
        AccountMeta(table, False, True),
        AccountMeta(authority, True, False),
        AccountMeta(payer, True, True),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ]
    return Instruction(LOOKUP_TABLE_PROGRAM_ID, data, metas), table


def extend_table_instruction(
    table: Pubkey, authority: Pubkey, payer: Pubkey, addresses: Sequence[Pubkey]
) -> Instruction:
    data = struct.pack("<IQ", _EXTEND, len(addresses)) + b"".join(bytes(a) for a in addresses)
    metas = [
        AccountMeta(table, False, True),
        AccountMeta(authority, True, False),
        AccountMeta(payer, True, True),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
    ]
    return Instruction(LOOKUP_TABLE_PROGRAM_ID, data, metas)


class LookupTables:
    """The settler's lookup tables on one cluster: which addresses they hold, and growing them."""

    def __init__(
        self,
        chain: Chain,
        payer: Keypair,
        cache_file: Path,
        *,
        existing: Iterable[Pubkey] = (),
    ) -> None:
        self.chain = chain
        self.payer = payer
        self.cache_file = cache_file
        self._tables: dict[Pubkey, list[Pubkey]] = {}
        self._index: dict[Pubkey, Pubkey] = {}
        """address -> table holding it."""
        self._seed = list(existing)
        self.created = 0
        self.extended = 0
        self.fees = 0

    # -- cache ------------------------------------------------------------------

    def _load_cache(self) -> list[Pubkey]:
        try:
            raw = json.loads(self.cache_file.read_text())
        except FileNotFoundError:
            return []
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("ignoring unreadable lookup-table cache %s: %s", self.cache_file, exc)
            return []
        if raw.get("payer") != str(self.payer.pubkey()) or raw.get("rpc_url") != self.chain.url:
            return []
        return [Pubkey.from_string(t) for t in raw.get("tables", [])]

    def _save_cache(self) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "payer": str(self.payer.pubkey()),
                    "rpc_url": self.chain.url,
                    "tables": [str(t) for t in self._tables],
                }
            )
        )
        os.replace(tmp, self.cache_file)

    async def load(self) -> None:
        """Read the cached (and configured) tables back from the chain."""
        for table in [*self._seed, *self._load_cache()]:
            if table in self._tables:
                continue
            data = await self.chain.account(table)
            if data is None:
                log.warning("lookup table %s from the cache does not exist; dropped", table)
                continue
            addresses = list(AddressLookupTable.deserialize(data).addresses)
            self._tables[table] = addresses
            for a in addresses:
                self._index.setdefault(a, table)

    # -- use --------------------------------------------------------------------

    def accounts_for(self, addresses: Iterable[Pubkey]) -> list[AddressLookupTableAccount]:
        """The tables holding any of ``addresses`` (only those: each costs 34+ bytes)."""
        needed = {self._index[a] for a in addresses if a in self._index}
        return [AddressLookupTableAccount(t, self._tables[t]) for t in self._tables if t in needed]

    def missing(self, addresses: Iterable[Pubkey]) -> list[Pubkey]:
        seen: set[Pubkey] = set()
        out = []
        for a in addresses:
            if a not in self._index and a not in seen:
                seen.add(a)
                out.append(a)
        return out

    async def ensure(self, addresses: Iterable[Pubkey]) -> None:
        """Make every address available through some table (create/extend as needed)."""
        todo = self.missing(addresses)
        if not todo:
            return
        last_slot = 0
        while todo:
            table = next(
                (t for t, a in self._tables.items() if len(a) < LOOKUP_TABLE_MAX_ADDRESSES), None
            )
            if table is None:
                table = await self._create()
            room = LOOKUP_TABLE_MAX_ADDRESSES - len(self._tables[table])
            chunk, todo = todo[: min(room, EXTEND_CHUNK)], todo[min(room, EXTEND_CHUNK) :]
            last_slot = max(last_slot, await self._extend(table, chunk))
        # Addresses appended in slot S can be looked up from slot S+1 on.
        await self._past(last_slot)

    async def _send(self, instructions: list[Instruction]) -> int:
        blockhash, _ = await self.chain.latest_blockhash()
        tx = sign(compile_message(self.payer.pubkey(), instructions, blockhash), self.payer)
        signature = await self.chain.send(tx)
        for _ in range(200):
            (status,) = await self.chain.statuses([signature])
            if status is not None and status.reached(self.chain.commitment):
                if status.err is not None:
                    raise TransactionRejectedError(status.err, [])
                info = await self.chain.transaction(signature)
                if info is not None:
                    self.fees += info.fee
                return status.slot
            await asyncio.sleep(0.1)
        raise TimeoutError(f"lookup-table transaction {signature} did not confirm")

    async def _create(self) -> Pubkey:
        # The recent slot must be in the SlotHashes sysvar, which holds the slots *before*
        # the one being processed: step back from the current slot until one is accepted.
        current = await self.chain.slot()
        recent_slots = [s for s in await self._slot_hashes() if s < current][:8]
        candidates = recent_slots + [max(0, current - back) for back in (1, 2, 4, 8)]
        last_error: TransactionRejectedError | None = None
        for recent in dict.fromkeys(candidates):  # in order, once each
            ix, table = create_table_instruction(self.payer.pubkey(), self.payer.pubkey(), recent)
            if table in self._tables:
                continue  # one table per (authority, slot): that slot made one already
            try:
                await self._send([ix])
                break
            except TransactionRejectedError as exc:
                if "not a recent slot" not in " ".join([exc.err, *exc.logs]):
                    raise
                last_error = exc
        else:
            raise last_error or TransactionRejectedError(
                "no recent slot left to create a table", []
            )
        self._tables[table] = []
        self.created += 1
        self._save_cache()
        log.info("created lookup table %s", table)
        return table

    async def _slot_hashes(self) -> list[int]:
        """Slots of the SlotHashes sysvar (bincode: u64 count, then (slot u64, hash 32)
        pairs), newest first: slots the lookup-table program accepts as recent."""
        data = await self.chain.account(SLOT_HASHES_SYSVAR)
        if data is None or len(data) < 8:
            return []
        count = min(int.from_bytes(data[:8], "little"), (len(data) - 8) // 40)
        slots = [int.from_bytes(data[8 + 40 * i : 16 + 40 * i], "little") for i in range(count)]
        return sorted(slots, reverse=True)

    async def _extend(self, table: Pubkey, addresses: list[Pubkey]) -> int:
        ix = extend_table_instruction(table, self.payer.pubkey(), self.payer.pubkey(), addresses)
        slot = await self._send([ix])
        self._tables[table].extend(addresses)
        for a in addresses:
            self._index.setdefault(a, table)
        self.extended += 1
        return slot

    async def _past(self, slot: int) -> None:
        """Wait (bounded, ~2 s) for the cluster to pass ``slot``. A runtime that makes
        one slot per transaction passes it with the next transaction anyway."""
        for _ in range(40):
            if await self.chain.slot() > slot:
                return
            await asyncio.sleep(0.05)
