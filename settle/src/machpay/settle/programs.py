"""The MachPay deployment as the settler sees it: the three programs' IDLs bound to their ids.

Everything program-specific lives here, named as docs/onchain.md names it:
which PDAs exist (channel, bond, proof record, config), how a settlement and
a fraud-proof transaction are laid out (the Ed25519 precompile immediately
before the MachPay instruction, ``(channel, bond)`` pairs as remaining
accounts), and how program events become settlement rows and
``chain.events`` facts. The bytes come from the IDL through
:mod:`machpay.settle.idl`; nothing is hand-encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from machpay.protocol import FraudProof, SignedIntent, channel_address
from machpay.settle.idl import DecodedEvent, IdlError, ProgramIdl
from machpay.settle.precompile import THIS_INSTRUCTION, SignedEntry, ed25519_instruction
from machpay.settle.records import ChainEventKind, ChainFact, ChannelOutcome

__all__ = ["IDL_FILES", "Deployment", "default_idl_dir"]

IDL_FILES = {
    "machpay": "machpay.json",
    "global_bond": "global_bond.json",
    "service_registry": "service_registry.json",
}

CHANNEL_SEED = b"channel"
BOND_SEED = b"bond"
PROOF_SEED = b"proof"
CONFIG_SEED = b"config"
BOND_AUTHORITY_SEED = b"bond_authority"
VENDOR_SEED = b"vendor"


def default_idl_dir() -> Path:
    """programs/idl of the checkout this package is installed from (editable installs)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "programs" / "idl"
        if candidate.is_dir():
            return candidate
    return here.parents[4] / "programs" / "idl"


@dataclass(frozen=True, slots=True)
class ChannelState:
    channel: bytes
    agent: bytes
    vendor: bytes
    settled: int


@dataclass(slots=True)
class Deployment:
    """The three programs of one deployment, with the IDL-derived codecs."""

    machpay: ProgramIdl
    global_bond: ProgramIdl
    service_registry: ProgramIdl | None = None

    @classmethod
    def load(
        cls,
        idl_dir: Path | None,
        *,
        machpay_id: str,
        global_bond_id: str,
        service_registry_id: str | None = None,
    ) -> Deployment:
        folder = idl_dir or default_idl_dir()
        if not folder.is_dir():
            raise IdlError(
                f"IDL folder {folder} does not exist (setting settle.idl_dir; the programs' "
                "IDLs are committed in programs/idl)"
            )
        machpay = ProgramIdl.load(folder / IDL_FILES["machpay"], machpay_id)
        bond = ProgramIdl.load(folder / IDL_FILES["global_bond"], global_bond_id)
        registry_file = folder / IDL_FILES["service_registry"]
        registry = (
            ProgramIdl.load(registry_file, service_registry_id)
            if service_registry_id and registry_file.exists()
            else None
        )
        return cls(machpay, bond, registry)

    @property
    def programs(self) -> list[ProgramIdl]:
        return [p for p in (self.machpay, self.global_bond, self.service_registry) if p]

    # -- addresses --------------------------------------------------------------

    def channel(self, agent: bytes, vendor: bytes) -> Pubkey:
        return Pubkey(
            channel_address(program_id=bytes(self.machpay.program_id), agent=agent, vendor=vendor)
        )

    def bond(self, agent: bytes) -> Pubkey:
        return Pubkey.find_program_address([BOND_SEED, agent], self.global_bond.program_id)[0]

    def proof_record(self, proof_id: bytes) -> Pubkey:
        return Pubkey.find_program_address([PROOF_SEED, proof_id], self.machpay.program_id)[0]

    def config(self) -> Pubkey:
        return Pubkey.find_program_address([CONFIG_SEED], self.machpay.program_id)[0]

    def bond_config(self) -> Pubkey:
        return Pubkey.find_program_address([CONFIG_SEED], self.global_bond.program_id)[0]

    # -- accounts ---------------------------------------------------------------

    def channel_state(self, data: bytes | None) -> ChannelState | None:
        if data is None:
            return None
        fields = self.machpay.account("Channel").decode(data)
        return ChannelState(
            channel=b"",
            agent=bytes(fields["agent"]),
            vendor=bytes(fields["vendor"]),
            settled=int(fields["settled"]),
        )

    def bond_balance(self, data: bytes | None) -> int | None:
        if data is None:
            return None
        return int(self.global_bond.account("Bond").decode(data)["balance"])

    def treasury(self, config_data: bytes) -> Pubkey:
        return Pubkey(bytes(self.machpay.account("Config").decode(config_data)["treasury"]))

    # -- transactions -----------------------------------------------------------

    def settle_instructions(
        self,
        *,
        payer: Pubkey,
        vendor: bytes,
        root: bytes,
        leaf_count: int,
        total: int,
        vouchers: Sequence[SignedIntent],
        prefix: Sequence[Instruction] = (),
    ) -> list[Instruction]:
        """``prefix`` (compute budget) + Ed25519 precompile + settle, in that order.

        The precompile sits immediately before the settle instruction, and its
        offsets all say "this instruction" (docs/onchain.md).
        """
        entries = [SignedEntry(v.agent, v.signature, v.message) for v in vouchers]
        remaining: list[AccountMeta] = []
        for v in vouchers:
            remaining.append(AccountMeta(self.channel(v.agent, vendor), False, True))
            remaining.append(AccountMeta(self.bond(v.agent), False, True))
        settle = self.machpay.instruction("settle").build(
            {"settler": payer, "vendor": Pubkey(vendor)},
            {"root": root, "leaf_count": leaf_count, "total": total},
            remaining,
        )
        return [*prefix, ed25519_instruction(entries, THIS_INSTRUCTION), settle]

    def per_channel_addresses(self, vendor: bytes, agents: Iterable[bytes]) -> list[Pubkey]:
        """What a lookup table should hold for these channels (channel, bond per agent)."""
        out: list[Pubkey] = []
        for a in agents:
            out += [self.channel(a, vendor), self.bond(a)]
        return out

    def fixed_addresses(self) -> list[Pubkey]:
        """Non-signer, non-program accounts every settle names (worth a table slot too)."""
        ix = self.machpay.instruction("settle")
        metas = ix.metas({"vendor": Pubkey.default(), "settler": Pubkey.default()}, {}, [])
        return [
            m.pubkey
            for m, spec in zip(metas, ix.accounts, strict=True)
            if spec.name not in ("vendor", "settler")
        ]

    def proof_instructions(
        self, proof: FraudProof, *, prover: Pubkey, treasury: Pubkey
    ) -> list[Instruction]:
        entries = [
            SignedEntry(s.agent, s.signature, s.message) for s in (proof.first, proof.second)
        ]
        ix = self.machpay.instruction("prove_fraud").build(
            {
                "fraud_record": self.proof_record(proof.proof_id),
                "bond": self.bond(proof.agent),
                "prover": prover,
                "treasury": treasury,
            },
            {"kind": int(proof.kind), "proof_id": proof.proof_id},
        )
        return [ed25519_instruction(entries, THIS_INSTRUCTION), ix]

    # -- errors -----------------------------------------------------------------

    _CUSTOM = re.compile(r"Custom\((\d+)\)|custom program error: 0x([0-9a-fA-F]+)")
    _FAILED_IN = re.compile(r"Program (\w+) failed")

    def explain_error(self, err: str, logs: Sequence[str] = ()) -> str:
        """``err`` with the program and error name of a custom program error, and the
        log lines that say what failed (clipped to 1,000 characters)."""
        text = err
        m = self._CUSTOM.search(err)
        if m:
            code = int(m.group(1)) if m.group(1) else int(m.group(2), 16)
            # The failing program is the last one the logs say failed, else any that knows it.
            failed = [f.group(1) for f in map(self._FAILED_IN.search, logs) if f]
            by_id = {str(p.program_id): p for p in self.programs}
            candidates = [by_id[f] for f in reversed(failed) if f in by_id] or self.programs
            for program in candidates:
                name = program.error_name(code)
                if name:
                    text = f"{program.name}.{name} ({code}): {err}"
                    break
        tail = [line for line in logs if "Error" in line or "failed" in line][-2:]
        return (text + (" | " + " | ".join(tail) if tail else ""))[:1000]

    # -- events -----------------------------------------------------------------

    def settled_channels(self, events: Iterable[DecodedEvent]) -> list[ChannelOutcome]:
        out: list[ChannelOutcome] = []
        for ev in events:
            if ev.program_id == self.machpay.program_id and ev.name == "BatchSettled":
                for c in ev.fields["channels"]:
                    out.append(
                        ChannelOutcome(
                            channel=bytes(c["channel"]),
                            agent=bytes(c["agent"]),
                            settled_cumulative=int(c["settled"]),
                            paid=int(c["paid"]),
                        )
                    )
        return out

    def facts(self, events: Iterable[DecodedEvent]) -> list[ChainFact]:
        """chain.events facts from one transaction's decoded events."""
        events = list(events)
        out: list[ChainFact] = []
        for ev in events:
            out.extend(self._facts_of(ev, events))
        return out

    def _vendor_of_channel(self, channel: bytes, events: Sequence[DecodedEvent]) -> bytes | None:
        """The vendor of ``channel`` as this transaction's ``BatchSettled`` names it.

        ``AgentInsolvent`` carries the channel but not the vendor, and a channel
        address cannot be inverted; the settle instruction that emitted it also
        emits ``BatchSettled`` (after it) listing the channel with its vendor.
        """
        for ev in events:
            if (
                ev.program_id == self.machpay.program_id
                and ev.name == "BatchSettled"
                and any(bytes(c["channel"]) == channel for c in ev.fields["channels"])
            ):
                return bytes(ev.fields["vendor"])
        return None

    def _facts_of(self, ev: DecodedEvent, events: Sequence[DecodedEvent]) -> list[ChainFact]:
        f: dict[str, Any] = ev.fields
        if ev.program_id == self.machpay.program_id and ev.name == "AgentInsolvent":
            # The bond fell short: the program paid min(owed, balance) and marked
            # the Bond insolvent (docs/onchain.md §5). amount = what stayed unpaid.
            channel = bytes(f["channel"])
            return [
                ChainFact(
                    ChainEventKind.AGENT_INSOLVENT,
                    channel,
                    int(f["owed"]) - int(f["paid"]),
                    agent=bytes(f["agent"]),
                    vendor=self._vendor_of_channel(channel, events),
                )
            ]
        if ev.program_id == self.global_bond.program_id:
            agent = bytes(f["agent"]) if "agent" in f else None
            if agent is None:
                return []
            account = bytes(self.bond(agent))
            kind = {
                "BondDeposited": ChainEventKind.BOND_DEPOSITED,
                "WithdrawalRequested": ChainEventKind.WITHDRAW_REQUESTED,
                "Withdrawn": ChainEventKind.WITHDRAWN,
                "BondSlashed": ChainEventKind.SLASHED,
            }.get(ev.name)
            if kind is None:
                return []
            unlock = int(f["unlock_at"]) if kind is ChainEventKind.WITHDRAW_REQUESTED else None
            return [ChainFact(kind, account, int(f["amount"]), agent=agent, unlock_at=unlock)]
        if ev.program_id == self.machpay.program_id and ev.name == "BatchSettled":
            vendor = bytes(f["vendor"])
            return [
                ChainFact(
                    ChainEventKind.BATCH_SETTLED,
                    bytes(c["channel"]),
                    int(c["paid"]),
                    agent=bytes(c["agent"]),
                    vendor=vendor,
                    batch_id=bytes(f["batch_id"]),
                )
                for c in f["channels"]
            ]
        registry = self.service_registry
        if registry is not None and ev.program_id == registry.program_id:
            vendor = bytes(f["vendor"])
            if ev.name == "VendorRegistered":
                pda = Pubkey.find_program_address([VENDOR_SEED, vendor], registry.program_id)[0]
                return [ChainFact(ChainEventKind.VENDOR_REGISTERED, bytes(pda), 0, vendor=vendor)]
            if ev.name == "ServiceUpdated":
                service = bytes(f["service"])
                return [
                    ChainFact(
                        ChainEventKind.SERVICE_UPDATED, service, int(f["price"]), vendor=vendor
                    )
                ]
        return []
