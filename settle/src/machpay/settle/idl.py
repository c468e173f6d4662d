"""A typed view of an Anchor IDL (spec 0.1.0, Anchor >= 0.30): instructions, accounts, events.

Everything the settler sends to or reads from a program goes through here, and
everything here is derived from the committed IDL JSON (``programs/idl/*.json``):

* instruction data = ``discriminator || borsh(args)``, the discriminator taken
  from the IDL and checked against ``sha256("global:<name>")[:8]`` when the
  IDL does not declare a custom one;
* account metas in the IDL's order (nested groups flattened), fixed addresses
  filled in, PDAs derived from their seeds when the caller does not pass them;
* account data = ``sha256("account:<Name>")[:8] || borsh(struct)``;
* events from ``Program data: <base64>`` log lines = ``sha256("event:<Name>")[:8]
  || borsh(struct)``, attributed to the program that emitted them.

anchorpy is not used: it pins old solana/solders and rejects the current IDL
format (README, "Dependencies we replaced").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from machpay.settle.borsh import BorshError, BorshType, TypeRegistry

__all__ = [
    "AccountSpec",
    "DecodedEvent",
    "IdlAccount",
    "IdlError",
    "IdlEvent",
    "IdlInstruction",
    "ProgramIdl",
    "discriminator",
    "events_from_logs",
]


class IdlError(ValueError):
    """The IDL is malformed or a request does not fit it; the message names the item."""


def discriminator(namespace: str, name: str) -> bytes:
    """Anchor's default discriminator: ``sha256("<namespace>:<name>")[:8]``."""
    return hashlib.sha256(f"{namespace}:{name}".encode()).digest()[:8]


def _declared_disc(item: Mapping[str, Any], where: str, default: bytes) -> bytes:
    raw = item.get("discriminator")
    if raw is None:
        return default
    try:
        return bytes(raw)
    except (TypeError, ValueError):
        raise IdlError(f"{where}: discriminator {raw!r} is not a byte list") from None


@dataclass(frozen=True, slots=True)
class Seed:
    kind: str
    """``const``, ``arg`` or ``account``."""
    value: bytes = b""
    path: str = ""


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """One account slot of an instruction, flattened (``group.name`` for nested groups)."""

    name: str
    writable: bool
    signer: bool
    optional: bool = False
    address: Pubkey | None = None
    seeds: tuple[Seed, ...] | None = None
    seeds_program: Pubkey | None = None


@dataclass(frozen=True, slots=True)
class IdlInstruction:
    name: str
    discriminator: bytes
    accounts: tuple[AccountSpec, ...]
    args: tuple[tuple[str, BorshType], ...]
    program_id: Pubkey

    def encode_args(self, args: Mapping[str, Any]) -> bytes:
        names = {n for n, _ in self.args}
        extra = set(args) - names
        if extra:
            raise IdlError(f"instruction {self.name}: unknown args {sorted(extra)}")
        out = bytearray(self.discriminator)
        for name, codec in self.args:
            if name not in args:
                raise IdlError(f"instruction {self.name}: arg {name!r} is missing")
            try:
                codec.write(args[name], out, f"{self.name}.args.{name}")
            except BorshError as exc:
                raise IdlError(str(exc)) from None
        return bytes(out)

    def decode_args(self, data: bytes) -> dict[str, Any]:
        if data[:8] != self.discriminator:
            raise IdlError(f"instruction {self.name}: data does not start with its discriminator")
        offset = 8
        out: dict[str, Any] = {}
        for name, codec in self.args:
            try:
                out[name], offset = codec.read(data, offset, f"{self.name}.args.{name}")
            except BorshError as exc:
                raise IdlError(str(exc)) from None
        if offset != len(data):
            raise IdlError(f"instruction {self.name}: {len(data) - offset} trailing bytes")
        return out

    def metas(
        self,
        accounts: Mapping[str, Pubkey],
        args: Mapping[str, Any] | None = None,
        remaining: Iterable[AccountMeta] = (),
    ) -> list[AccountMeta]:
        """Account metas in IDL order, then ``remaining`` (Anchor's remaining_accounts).

        Fixed addresses come from the IDL; a PDA slot not given is derived from
        its seeds; an optional slot not given is the program id (Anchor's
        "None" marker). A missing required account is an error naming it.
        """
        unknown = set(accounts) - {a.name for a in self.accounts}
        if unknown:
            raise IdlError(f"instruction {self.name}: unknown accounts {sorted(unknown)}")
        resolved: dict[str, Pubkey] = {}
        metas: list[AccountMeta] = []
        for spec in self.accounts:
            key = accounts.get(spec.name) or spec.address
            if key is None and spec.seeds is not None:
                key = self._derive(spec, resolved, accounts, args or {})
            if key is None:
                if spec.optional:
                    metas.append(AccountMeta(self.program_id, False, False))
                    continue
                raise IdlError(f"instruction {self.name}: account {spec.name!r} is required")
            resolved[spec.name] = key
            metas.append(AccountMeta(key, spec.signer, spec.writable))
        metas.extend(remaining)
        return metas

    def _derive(
        self,
        spec: AccountSpec,
        resolved: Mapping[str, Pubkey],
        given: Mapping[str, Pubkey],
        args: Mapping[str, Any],
    ) -> Pubkey | None:
        assert spec.seeds is not None
        parts: list[bytes] = []
        arg_types = dict(self.args)
        for seed in spec.seeds:
            if seed.kind == "const":
                parts.append(seed.value)
            elif seed.kind == "account":
                key = resolved.get(seed.path) or given.get(seed.path)
                if key is None:
                    return None  # depends on an account field; the caller must pass it
                parts.append(bytes(key))
            elif seed.kind == "arg":
                head = seed.path.split(".")[0]
                if head not in args or head != seed.path:
                    return None
                value = args[head]
                parts.append(
                    value.encode() if isinstance(value, str) else arg_types[head].encode(value)
                )
            else:
                return None
        program = spec.seeds_program or self.program_id
        return Pubkey.find_program_address(parts, program)[0]

    def build(
        self,
        accounts: Mapping[str, Pubkey],
        args: Mapping[str, Any] | None = None,
        remaining: Iterable[AccountMeta] = (),
    ) -> Instruction:
        """The solders Instruction: IDL-ordered metas (+ remaining) and encoded args."""
        data = self.encode_args(args or {})
        return Instruction(self.program_id, data, self.metas(accounts, args, remaining))


@dataclass(frozen=True, slots=True)
class IdlAccount:
    name: str
    discriminator: bytes
    codec: BorshType

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode account data (trailing bytes allowed: accounts are often over-allocated)."""
        if data[:8] != self.discriminator:
            raise IdlError(f"account data is not a {self.name} (discriminator mismatch)")
        try:
            value, _ = self.codec.decode_prefix(data, 8, self.name)
        except BorshError as exc:
            raise IdlError(str(exc)) from None
        return dict(value) if isinstance(value, dict) else {"value": value}

    def encode(self, value: Mapping[str, Any]) -> bytes:
        try:
            return self.discriminator + self.codec.encode(dict(value), self.name)
        except BorshError as exc:
            raise IdlError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class IdlEvent:
    name: str
    discriminator: bytes
    codec: BorshType

    def decode(self, payload: bytes) -> dict[str, Any]:
        try:
            value = self.codec.decode(payload[8:], self.name)
        except BorshError as exc:
            raise IdlError(str(exc)) from None
        return dict(value) if isinstance(value, dict) else {"value": value}

    def encode(self, value: Mapping[str, Any]) -> bytes:
        try:
            return self.discriminator + self.codec.encode(dict(value), self.name)
        except BorshError as exc:
            raise IdlError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    program_id: Pubkey
    name: str
    fields: dict[str, Any]
    index: int
    """Position among the events of its transaction (stable across re-reads)."""


@dataclass(slots=True)
class ProgramIdl:
    """One program's IDL, compiled."""

    name: str
    program_id: Pubkey
    instructions: dict[str, IdlInstruction] = field(default_factory=dict)
    accounts: dict[str, IdlAccount] = field(default_factory=dict)
    events: dict[str, IdlEvent] = field(default_factory=dict)
    errors: dict[int, tuple[str, str]] = field(default_factory=dict)
    """Custom error code -> (name, message)."""
    types: TypeRegistry = field(default_factory=lambda: TypeRegistry([]))

    @classmethod
    def load(cls, path: Path | str, program_id: Pubkey | str | None = None) -> ProgramIdl:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise IdlError(f"IDL file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise IdlError(f"IDL file {path} is not JSON: {exc}") from None
        try:
            return cls.from_json(raw, program_id)
        except IdlError as exc:
            raise IdlError(f"IDL file {path}: {exc}") from None

    @classmethod
    def from_json(
        cls, raw: Mapping[str, Any], program_id: Pubkey | str | None = None
    ) -> ProgramIdl:
        if "address" not in raw and program_id is None:
            raise IdlError("no 'address' (pre-0.30 IDL?) and no program id given")
        if "metadata" not in raw or "instructions" not in raw:
            raise IdlError("not an Anchor >= 0.30 IDL (needs 'metadata' and 'instructions')")
        try:
            pid = (
                program_id
                if isinstance(program_id, Pubkey)
                else Pubkey.from_string(str(program_id or raw["address"]))
            )
        except ValueError as exc:
            raise IdlError(f"program address is not base58: {exc}") from None
        name = str(raw["metadata"].get("name", "program"))
        try:
            types = TypeRegistry(list(raw.get("types", [])))
        except BorshError as exc:
            raise IdlError(str(exc)) from None
        idl = cls(name=name, program_id=pid, types=types)
        for ix in raw["instructions"]:
            idl.instructions[ix["name"]] = _instruction(ix, types, pid)
        for acc in raw.get("accounts", []):
            acc_name = acc["name"]
            disc = _declared_disc(acc, f"accounts.{acc_name}", discriminator("account", acc_name))
            idl.accounts[acc_name] = IdlAccount(
                acc_name, disc, _struct(types, acc_name, "accounts")
            )
        for ev in raw.get("events", []):
            ev_name = ev["name"]
            disc = _declared_disc(ev, f"events.{ev_name}", discriminator("event", ev_name))
            idl.events[ev_name] = IdlEvent(ev_name, disc, _struct(types, ev_name, "events"))
        for err in raw.get("errors", []):
            idl.errors[int(err["code"])] = (str(err["name"]), str(err.get("msg", "")))
        return idl

    def instruction(self, name: str) -> IdlInstruction:
        try:
            return self.instructions[name]
        except KeyError:
            raise IdlError(
                f"{self.name} has no instruction {name!r}; it has {sorted(self.instructions)}"
            ) from None

    def account(self, name: str) -> IdlAccount:
        try:
            return self.accounts[name]
        except KeyError:
            raise IdlError(f"{self.name} has no account type {name!r}") from None

    def event_by_payload(self, payload: bytes) -> IdlEvent | None:
        head = payload[:8]
        for event in self.events.values():
            if event.discriminator == head:
                return event
        return None

    def error_name(self, code: int) -> str | None:
        found = self.errors.get(code)
        return found[0] if found else None


def _struct(types: TypeRegistry, name: str, section: str) -> BorshType:
    if name not in types:
        raise IdlError(f"{section}.{name}: no type definition of that name")
    try:
        return types.defined(name)
    except BorshError as exc:
        raise IdlError(str(exc)) from None


def _instruction(ix: Mapping[str, Any], types: TypeRegistry, program_id: Pubkey) -> IdlInstruction:
    name = ix["name"]
    disc = _declared_disc(ix, f"instructions.{name}", discriminator("global", name))
    try:
        args = tuple((a["name"], types.compile(a["type"])) for a in ix.get("args", []))
    except BorshError as exc:
        raise IdlError(f"instructions.{name}: {exc}") from None
    accounts = tuple(_flatten(ix.get("accounts", []), "", f"instructions.{name}"))
    return IdlInstruction(name, disc, accounts, args, program_id)


def _flatten(items: Iterable[Mapping[str, Any]], prefix: str, where: str) -> Iterable[AccountSpec]:
    for item in items:
        full = f"{prefix}{item['name']}"
        if "accounts" in item:  # a composite (nested Accounts struct)
            yield from _flatten(item["accounts"], f"{full}.", where)
            continue
        address = None
        if item.get("address"):
            try:
                address = Pubkey.from_string(item["address"])
            except ValueError:
                raise IdlError(
                    f"{where}.{full}: address {item['address']!r} is not base58"
                ) from None
        seeds = None
        seeds_program = None
        pda = item.get("pda")
        if pda:
            seeds = tuple(_seed(s, f"{where}.{full}") for s in pda.get("seeds", []))
            prog = pda.get("program")
            if prog and prog.get("kind") == "const":
                seeds_program = Pubkey(bytes(prog["value"]))
            elif prog:
                seeds = None  # program chosen at run time: the caller passes the account
        yield AccountSpec(
            name=full,
            writable=bool(item.get("writable", False)),
            signer=bool(item.get("signer", False)),
            optional=bool(item.get("optional", False)),
            address=address,
            seeds=seeds,
            seeds_program=seeds_program,
        )


def _seed(raw: Mapping[str, Any], where: str) -> Seed:
    kind = raw.get("kind")
    if kind == "const":
        return Seed("const", value=bytes(raw["value"]))
    if kind in ("arg", "account"):
        return Seed(kind, path=str(raw["path"]))
    raise IdlError(f"{where}: unknown seed kind {kind!r}")


# -- logs -----------------------------------------------------------------------

_INVOKE = re.compile(r"^Program (\w+) invoke \[(\d+)\]$")
_EXIT = re.compile(r"^Program (\w+) (success|failed.*)$")
_DATA = "Program data: "


def events_from_logs(logs: Iterable[str], programs: Iterable[ProgramIdl]) -> list[DecodedEvent]:
    """Typed events from a transaction's log messages, in emission order.

    A ``Program data:`` line is attributed to the program on top of the
    invoke stack, so a program that logs bytes looking like our event cannot
    forge one: only lines emitted while one of ``programs`` is executing are
    decoded. Lines that do not decode are skipped (another program version).
    """
    by_id = {str(p.program_id): p for p in programs}
    stack: list[str] = []
    events: list[DecodedEvent] = []
    for line in logs:
        m = _INVOKE.match(line)
        if m:
            stack.append(m.group(1))
            continue
        m = _EXIT.match(line)
        if m:
            if stack and stack[-1] == m.group(1):
                stack.pop()
            continue
        if not line.startswith(_DATA) or not stack:
            continue
        program = by_id.get(stack[-1])
        if program is None:
            continue
        try:
            payload = base64.b64decode(line[len(_DATA) :].split(" ")[0], validate=True)
        except (binascii.Error, ValueError):
            continue
        event = program.event_by_payload(payload)
        if event is None:
            continue
        try:
            fields = event.decode(payload)
        except IdlError:
            continue
        events.append(DecodedEvent(program.program_id, event.name, fields, len(events)))
    return events
