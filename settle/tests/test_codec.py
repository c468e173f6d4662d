"""Borsh/IDL codec: hypothesis round trips over every supported type; errors name the field."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from machpay.settle.borsh import BorshError, TypeRegistry, Variant
from machpay.settle.idl import IdlError, ProgramIdl, discriminator, events_from_logs

FIXTURE = Path(__file__).parent / "fixtures" / "toy_idl.json"
_INT_RANGES = {
    "u8": (0, 2**8 - 1),
    "i8": (-(2**7), 2**7 - 1),
    "u16": (0, 2**16 - 1),
    "i16": (-(2**15), 2**15 - 1),
    "u32": (0, 2**32 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "u64": (0, 2**64 - 1),
    "i64": (-(2**63), 2**63 - 1),
    "u128": (0, 2**128 - 1),
    "i128": (-(2**127), 2**127 - 1),
}


def values_of(spec: Any, types: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy of Python values for an IDL type expression (the codec's value model)."""
    if isinstance(spec, str):
        if spec in _INT_RANGES:
            lo, hi = _INT_RANGES[spec]
            return st.integers(lo, hi)
        return {
            "bool": st.booleans(),
            "pubkey": st.binary(min_size=32, max_size=32),
            "bytes": st.binary(max_size=64),
            "string": st.text(max_size=20),
        }[spec]
    ((key, arg),) = spec.items()
    if key == "array":
        inner, n = arg
        if inner == "u8":
            return st.binary(min_size=n, max_size=n)
        return st.lists(values_of(inner, types), min_size=n, max_size=n)
    if key == "vec":
        if arg == "u8":
            return st.binary(max_size=40)
        return st.lists(values_of(arg, types), max_size=4)
    if key in ("option", "coption"):
        return st.none() | values_of(arg, types)
    body = types[arg["name"]]["type"]
    if body["kind"] == "struct":
        return fields_of(body.get("fields"), types)
    return st.one_of([variant_of(v, types) for v in body["variants"]])


def variant_of(variant: dict[str, Any], types: dict[str, Any]) -> st.SearchStrategy[Variant]:
    name: str = variant["name"]
    return fields_of(variant.get("fields"), types).map(lambda f: Variant(name, f))


def fields_of(fields: Any, types: dict[str, Any]) -> st.SearchStrategy[Any]:
    if not fields:
        return st.none()
    if isinstance(fields[0], dict):
        return st.fixed_dictionaries({f["name"]: values_of(f["type"], types) for f in fields})
    return st.tuples(*(values_of(t, types) for t in fields))


IDL = ProgramIdl.load(FIXTURE)
RAW = __import__("json").loads(FIXTURE.read_text())
TYPES = {t["name"]: t for t in RAW["types"]}
PRIMS = [*_INT_RANGES, "bool", "pubkey", "bytes", "string"]

# Random IDL type expressions, nested up to a few levels, over primitives and the fixture's types.
type_exprs = st.recursive(
    st.sampled_from(PRIMS) | st.sampled_from([{"defined": {"name": n}} for n in TYPES]),
    lambda inner: st.one_of(
        inner.map(lambda t: {"vec": t}),
        inner.map(lambda t: {"option": t}),
        st.tuples(inner, st.integers(0, 3)).map(lambda p: {"array": [p[0], p[1]]}),
    ),
    max_leaves=4,
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_type_round_trips(data: st.DataObject) -> None:
    spec = data.draw(type_exprs)
    codec = IDL.types.compile(spec)
    value = data.draw(values_of(spec, TYPES))
    encoded = codec.encode(value)
    assert codec.decode(encoded) == value
    if codec.size is not None:
        assert len(encoded) == codec.size
    # Every strict prefix is refused with an error naming the value, never garbage.
    if encoded:
        with pytest.raises(BorshError):
            codec.decode(encoded[: len(encoded) - 1])


@settings(max_examples=200, deadline=None)
@given(values_of({"defined": {"name": "Item"}}, TYPES))
def test_account_round_trips_and_tolerates_over_allocation(item: dict[str, Any]) -> None:
    account = IDL.account("Item")
    data = account.encode(item)
    assert data[:8] == hashlib.sha256(b"account:Item").digest()[:8]
    assert account.decode(data) == item
    assert account.decode(data + bytes(17)) == item  # accounts are often allocated larger


@settings(max_examples=200, deadline=None)
@given(values_of({"defined": {"name": "ThingDone"}}, TYPES))
def test_events_from_program_data_logs(event: dict[str, Any]) -> None:
    payload = IDL.events["ThingDone"].encode(event)
    pid = str(IDL.program_id)
    line = "Program data: " + base64.b64encode(payload).decode()
    logs = [
        f"Program {pid} invoke [1]",
        "Program log: Instruction: DoThing",
        line,
        f"Program {pid} consumed 1234 of 200000 compute units",
        f"Program {pid} success",
    ]
    (decoded,) = events_from_logs(logs, [IDL])
    assert decoded.name == "ThingDone"
    assert decoded.fields == event
    assert decoded.program_id == IDL.program_id


def test_event_logged_by_another_program_is_not_ours() -> None:
    """Bytes that look like our event, emitted while another program runs, are ignored."""
    payload = IDL.events["ThingDone"].encode(
        {"id": 1, "who": bytes(32), "shape": Variant("Empty"), "points": []}
    )
    line = "Program data: " + base64.b64encode(payload).decode()
    pid = str(IDL.program_id)
    other = "Other11111111111111111111111111111111111111"
    logs = [
        f"Program {pid} invoke [1]",
        f"Program {other} invoke [2]",
        line,
        f"Program {other} success",
        line,
        f"Program {pid} success",
        line,  # after the program returned: nobody's
    ]
    events = events_from_logs(logs, [IDL])
    assert len(events) == 1
    assert events[0].index == 0


def test_instruction_data_accounts_and_pdas() -> None:
    ix_spec = IDL.instruction("do_thing")
    assert ix_spec.discriminator == hashlib.sha256(b"global:do_thing").digest()[:8]
    payer = Pubkey.new_unique()
    inner = Pubkey.new_unique()
    args = {
        "id": 7,
        "root": bytes(range(32)),
        "label": "héllo",
        "shape": Variant("Circle", {"r": 3}),
        "maybe": None,
        "points": [{"x": -1, "y": 2**100}],
    }
    ix = ix_spec.build({"payer": payer, "nested.inner": inner}, args)
    assert ix.program_id == IDL.program_id
    assert ix_spec.decode_args(bytes(ix.data)) == args
    config = Pubkey.find_program_address([b"config"], IDL.program_id)[0]
    item = Pubkey.find_program_address(
        [b"item", bytes(payer), (7).to_bytes(8, "little")], IDL.program_id
    )[0]
    metas = [(m.pubkey, m.is_signer, m.is_writable) for m in ix.accounts]
    assert metas == [
        (config, False, False),
        (payer, True, True),
        (item, False, True),
        (IDL.program_id, False, False),  # optional account left out: the program id
        (inner, False, True),
        (Pubkey.from_string("11111111111111111111111111111111"), False, False),
    ]


def test_errors_name_what_is_wrong() -> None:
    ix_spec = IDL.instruction("do_thing")
    good = {
        "id": 1,
        "root": bytes(32),
        "label": "",
        "shape": Variant("Empty"),
        "maybe": 5,
        "points": [],
    }
    with pytest.raises(IdlError, match=r"do_thing\.args\.id: -1 is outside the u64 range"):
        ix_spec.encode_args({**good, "id": -1})
    with pytest.raises(IdlError, match=r"do_thing\.args\.root: expected 32 bytes"):
        ix_spec.encode_args({**good, "root": b"x"})
    with pytest.raises(IdlError, match=r"do_thing\.args\.points\[0\]\.y: missing"):
        ix_spec.encode_args({**good, "points": [{"x": 1}]})
    with pytest.raises(IdlError, match="arg 'label' is missing"):
        ix_spec.encode_args({k: v for k, v in good.items() if k != "label"})
    with pytest.raises(IdlError, match=r"do_thing\.args\.id: expected an integer"):
        ix_spec.encode_args({**good, "id": True})
    with pytest.raises(IdlError, match="account 'payer' is required"):
        ix_spec.build({}, good)
    with pytest.raises(IdlError, match="no instruction 'nope'"):
        IDL.instruction("nope")
    with pytest.raises(IdlError, match="not a Item"):
        IDL.account("Item").decode(bytes(64))
    assert IDL.error_name(6000) == "Bad"


def test_malformed_idl_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    with pytest.raises(IdlError, match=str(missing)):
        ProgramIdl.load(missing)
    bad = tmp_path / "bad.json"
    bad.write_text('{"address": "x", "metadata": {}, "instructions": []}')
    with pytest.raises(IdlError, match=r"bad\.json: program address is not base58"):
        ProgramIdl.load(bad)
    old = tmp_path / "old.json"
    old.write_text('{"version": "0.1.0", "name": "x", "instructions": []}')
    with pytest.raises(IdlError, match=r"not an Anchor >= 0\.30 IDL"):
        ProgramIdl.load(old, program_id=Pubkey.new_unique())


def test_declared_discriminator_wins_and_defaults_match_anchor() -> None:
    assert discriminator("event", "X") == hashlib.sha256(b"event:X").digest()[:8]
    raw = {
        "address": "11111111111111111111111111111111",
        "metadata": {"name": "d"},
        "instructions": [{"name": "go", "discriminator": [1, 2], "accounts": [], "args": []}],
    }
    idl = ProgramIdl.from_json(raw)
    assert idl.instruction("go").encode_args({}) == b"\x01\x02"


def test_hostile_vec_length_is_refused_cheaply() -> None:
    codec = TypeRegistry([]).compile({"vec": "u64"})
    with pytest.raises(BorshError, match="does not fit"):
        codec.decode((2**32 - 1).to_bytes(4, "little"))
