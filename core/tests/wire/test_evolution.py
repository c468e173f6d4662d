"""Schema evolution: old records decode with new readers; incompatible changes are caught."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from machpay import topics
from machpay.wire import FileSchemaRegistry, WireCodec, WireDecodeError, frame
from machpay.wire.cli import schemas
from machpay.wire.compat import resolution_problems, round_trip_problems

WHERE = {"partition": 0, "offset": 7}
AddVersion = Callable[[dict[str, Any]], Path]


def status_v1(catalogue: FileSchemaRegistry) -> dict[str, Any]:
    return copy.deepcopy(catalogue.latest("machpay.AgentStatus").schema)


def agent_status() -> dict[str, Any]:
    return {
        "agent": b"\x07" * 32,
        "bond": 5_000_000,
        "pending_withdrawal": {"amount": 1_000, "unlock_at": 1_800_000_000},
        "settled": 10,
        "exposure": 20,
        "banned": False,
        "ban_reason": None,
        "insolvent": False,
        "version": 3,
        "updated_at_ms": 1_700_000_000_000,
    }


def with_field(schema: dict[str, Any], new_field: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    out["fields"].append(new_field)
    return out


def next_id(catalogue: FileSchemaRegistry) -> int:
    """The id `machpay schemas add` gives the next version: one above every id in use."""
    return 1 + max(v.id for s in catalogue.subjects() for v in catalogue.versions(s))


REGION = {"name": "region", "type": "string", "default": "eu", "doc": "Where it was computed."}


def test_old_records_decode_with_the_new_reader(
    catalogue: FileSchemaRegistry, schemas_dir: Path, add_version: AddVersion
) -> None:
    old_codec = WireCodec(FileSchemaRegistry(schemas_dir / "registry.json"))
    old_record = old_codec.encode(topics.AGENTS_STATUS, agent_status())

    registry_file = add_version(with_field(status_v1(catalogue), REGION))
    new_codec = WireCodec(FileSchemaRegistry(registry_file))
    new_id = next_id(catalogue)
    assert new_codec.schema_id(topics.AGENTS_STATUS) == new_id
    decoded = new_codec.decode(old_record, topic=topics.AGENTS_STATUS, **WHERE)
    assert decoded == {**agent_status(), "region": "eu"}

    new_record = new_codec.encode(topics.AGENTS_STATUS, {**agent_status(), "region": "us"})
    assert new_record[1:5] == new_id.to_bytes(4, "big")
    assert new_codec.decode(new_record, topic=topics.AGENTS_STATUS, **WHERE)["region"] == "us"
    # A process still on the old registry meets an id it does not know: dead letter, not a crash.
    with pytest.raises(WireDecodeError, match=f"schema id {new_id}: unknown_schema_id"):
        old_codec.decode(new_record, topic=topics.AGENTS_STATUS, **WHERE)


def test_cli_check_passes_a_compatible_version_and_fails_a_broken_one(
    catalogue: FileSchemaRegistry, add_version: AddVersion
) -> None:
    runner = CliRunner()
    registry_file = add_version(with_field(status_v1(catalogue), REGION))
    result = runner.invoke(schemas, ["check", "--registry-file", str(registry_file)])
    assert result.exit_code == 0, result.output
    assert "ok    machpay.AgentStatus (2 versions)" in result.output

    broken = with_field(status_v1(catalogue), {"name": "region", "type": "string", "doc": "x"})
    add_version(broken)
    result = runner.invoke(schemas, ["check", "--registry-file", str(registry_file)])
    assert result.exit_code == 1
    assert "FAIL  machpay.AgentStatus (3 versions)" in result.output
    assert "machpay.AgentStatus v3 vs v1: machpay.AgentStatus.region: field is new" in result.output
    assert "round trip" in result.output


def test_cli_add_assigns_the_next_id_and_refuses_incompatible_versions(
    catalogue: FileSchemaRegistry, schemas_dir: Path
) -> None:
    runner = CliRunner()
    registry_file = schemas_dir / "registry.json"
    bad = with_field(status_v1(catalogue), {"name": "region", "type": "string", "doc": "x"})
    bad_file = schemas_dir / "avro" / "machpay.AgentStatus.v2.avsc"
    bad_file.write_text(json.dumps(bad))
    result = runner.invoke(schemas, ["add", str(bad_file), "--registry-file", str(registry_file)])
    assert result.exit_code == 1
    assert "not added" in result.output
    assert len(FileSchemaRegistry(registry_file).versions("machpay.AgentStatus")) == 1

    bad_file.write_text(json.dumps(with_field(status_v1(catalogue), REGION)))
    result = runner.invoke(schemas, ["add", str(bad_file), "--registry-file", str(registry_file)])
    assert result.exit_code == 0, result.output
    new_id = next_id(catalogue)
    assert f"added machpay.AgentStatus v2 with schema id {new_id}" in result.output
    assert FileSchemaRegistry(registry_file).latest("machpay.AgentStatus").id == new_id


# -- the structural check, case by case ---------------------------------------------


def record(*fields: dict[str, Any], name: str = "R", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "machpay", "fields": list(fields), **extra}


def f(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "E", "symbols": list(symbols), **extra}


COMPATIBLE = {
    "add field with default": (
        record(f("a", "long")),
        record(f("a", "long"), f("b", "int", default=0)),
    ),
    "int to long promotion": (record(f("a", "int")), record(f("a", "long"))),
    "long to double promotion": (record(f("a", "long")), record(f("a", "double"))),
    "string to bytes": (record(f("a", "string")), record(f("a", "bytes"))),
    "rename with alias": (record(f("a", "long")), record(f("b", "long", aliases=["a"]))),
    "record rename with alias": (
        record(f("a", "long")),
        record(f("a", "long"), name="S", aliases=["R"]),
    ),
    "widen to a union": (record(f("a", "long")), record(f("a", ["null", "long"], default=None))),
    "remove a defaulted field": (
        record(f("a", "long"), f("b", "int", default=0)),
        record(f("a", "long")),
    ),
    "enum grows with default": (
        record(f("e", enum("A", "B"))),
        record(f("e", enum("A", "B", "C", default="A"))),
    ),
}

INCOMPATIBLE = {
    "add field without default": (
        record(f("a", "long")),
        record(f("a", "long"), f("b", "int")),
        "R.b: field is new",
    ),
    "long to int": (record(f("a", "long")), record(f("a", "int")), "type changed from long to int"),
    "rename without alias": (record(f("a", "long")), record(f("b", "long")), "R.b: field is new"),
    "record rename without alias": (
        record(f("a", "long")),
        record(f("a", "long"), name="S"),
        "record machpay.R is now named machpay.S",
    ),
    "remove a field without default": (
        record(f("a", "long"), f("b", "int")),
        record(f("a", "long")),
        "R.b: field was removed but had no default",
    ),
    "narrow a union": (
        record(f("a", ["null", "long"], default=None)),
        record(f("a", "long")),
        "type changed from null to long",
    ),
    "enum loses a symbol": (
        record(f("e", enum("A", "B"))),
        record(f("e", enum("A"))),
        "lost symbols ['B']",
    ),
    "enum grows without default": (
        record(f("e", enum("A", "B"))),
        record(f("e", enum("A", "B", "C"))),
        "gained symbols ['C'] but declares no default",
    ),
    "fixed size changes": (
        record(f("k", {"type": "fixed", "name": "K", "size": 32})),
        record(f("k", {"type": "fixed", "name": "K", "size": 64})),
        "size changed from 32 to 64",
    ),
    "nested type change": (
        record(f("xs", {"type": "array", "items": record(f("n", "long"), name="I")})),
        record(f("xs", {"type": "array", "items": record(f("n", "string"), name="I")})),
        "R.xs[].n: type changed from long to string",
    ),
}


@pytest.mark.parametrize(("old", "new"), COMPATIBLE.values(), ids=list(COMPATIBLE))
def test_compatible_changes_pass(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert resolution_problems(new, old) == []
    assert round_trip_problems(new, old) == []


@pytest.mark.parametrize(("old", "new", "expected"), INCOMPATIBLE.values(), ids=list(INCOMPATIBLE))
def test_incompatible_changes_are_named(
    old: dict[str, Any], new: dict[str, Any], expected: str
) -> None:
    problems = resolution_problems(new, old)
    assert any(expected in p for p in problems), problems


def test_spec_only_mode_allows_what_avro_allows() -> None:
    old, new = record(f("a", "long"), f("b", "int")), record(f("a", "long"))
    assert resolution_problems(new, old, policy=False) == []


def test_round_trip_agrees_with_structure_on_a_type_change() -> None:
    old, new = record(f("a", "string")), record(f("a", "long"))
    assert resolution_problems(new, old)
    assert round_trip_problems(new, old)


def test_machpay_schemas_takes_the_registry_file_from_the_settings(
    catalogue: FileSchemaRegistry,
    add_version: AddVersion,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib.metadata import EntryPoint

    import machpay.cli

    ep = EntryPoint("schemas", "machpay.wire.cli:schemas", machpay.cli.COMMAND_GROUP)
    monkeypatch.setattr(machpay.cli, "_entry_points", lambda: {"schemas": ep})
    registry_file = add_version(with_field(status_v1(catalogue), REGION))
    env = {"MACHPAY_SCHEMA_REGISTRY__REGISTRY_FILE": str(registry_file)}
    result = CliRunner().invoke(machpay.cli.cli, ["schemas", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert "machpay.AgentStatus v2  avro/machpay.AgentStatus.v2.avsc" in result.output


# -- machpay.ChainEvent v2: AGENT_INSOLVENT ------------------------------------------


def chain_event(kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "account": b"\x05" * 32,
        "agent": b"\x06" * 32,
        "vendor": b"\x07" * 32,
        "amount": 4_000,
        "slot": 12,
        "signature": "5sig",
        "at_ms": 1_700_000_000_000,
        "batch_id": None,
        "unlock_at": None,
    }


def test_chain_event_v2_is_written_and_v1_records_still_decode(
    catalogue: FileSchemaRegistry, codec: WireCodec
) -> None:
    v1, v2 = catalogue.versions("machpay.ChainEvent")[:2]
    assert (v1.id, v2.id) == (8, 9)  # committed: stored records carry these ids
    insolvent = codec.encode(topics.CHAIN_EVENTS, chain_event("AGENT_INSOLVENT"))
    assert insolvent[1:5] == (9).to_bytes(4, "big")  # the latest version is what is written
    assert codec.decode(insolvent, topic=topics.CHAIN_EVENTS, **WHERE) == chain_event(
        "AGENT_INSOLVENT"
    )
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(v1.schema), chain_event("SLASHED"))
    old = frame(8, body.getvalue())
    assert codec.decode(old, topic=topics.CHAIN_EVENTS, **WHERE) == chain_event("SLASHED")


def test_a_kind_added_after_v2_reads_as_unknown(catalogue: FileSchemaRegistry) -> None:
    v2 = catalogue.latest("machpay.ChainEvent").schema
    v3 = copy.deepcopy(v2)
    kind = v3["fields"][0]["type"]
    kind["symbols"] = [*kind["symbols"], "CHANNEL_CLOSED"]
    assert [str(f) for f in resolution_problems(v3, v2)] == []  # a legal next version
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(v3), chain_event("CHANNEL_CLOSED"))
    body.seek(0)
    read = schemaless_reader(body, parse_schema(v3), parse_schema(v2))
    assert isinstance(read, dict)
    assert read["kind"] == "UNKNOWN"  # consumers at v2 ignore it instead of failing
