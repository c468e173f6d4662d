"""Schema evolution checks: can a new reader read everything old writers wrote?

fastavro resolves schemas when reading but cannot say in advance whether two
schemas are compatible, so this module does, in two independent ways:

1. :func:`resolution_problems` walks a reader and a writer schema side by side
   following the Avro specification's resolution rules (names and aliases,
   promotions, unions, enum symbols, fixed sizes, field defaults), plus the
   project's stricter rules from ``schemas/README.md`` (a removed field must
   have had a default, an enum never loses symbols and only grows with a
   default symbol).
2. :func:`round_trip_problems` encodes generated samples with the old schema
   and decodes them with the new one through fastavro.

:func:`check_registry` runs both for every version of every subject against
all its previous versions (BACKWARD_TRANSITIVE), plus :func:`lint_schema`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import validate

from machpay.wire.registry import FileSchemaRegistry, SchemaVersion

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
# writer type -> reader types it may be read as (Avro specification, "Schema Resolution").
PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


@dataclass
class _Side:
    """One schema being walked: its named types by full name."""

    named: dict[str, Any]

    def deref(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            try:
                return self.named[schema]
            except KeyError:
                raise ValueError(f"unknown type name {schema!r}") from None
        if isinstance(schema, dict) and schema.get("type") in PRIMITIVES:
            return schema["type"]  # {"type": "long", "logicalType": ...} reads as its base type
        return schema


def _parsed(schema: Any) -> tuple[Any, _Side]:
    named: dict[str, Any] = {}
    parsed = parse_schema(schema, named_schemas=named, _write_hint=False)
    return parsed, _Side(named)


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    return str(schema["type"])


def _describe(schema: Any) -> str:
    kind = _kind(schema)
    if kind in NAMED:
        return f"{kind} {schema['name']}"
    if kind == "union":
        return "union [" + ", ".join(_describe(b) for b in schema) + "]"
    return kind


def _qualified_aliases(schema: dict[str, Any]) -> set[str]:
    name: str = schema["name"]
    namespace = name.rpartition(".")[0]
    out = set()
    for alias in schema.get("aliases", ()):
        out.add(alias if "." in alias or not namespace else f"{namespace}.{alias}")
    return out


@dataclass
class _Walk:
    reader: _Side
    writer: _Side
    policy: bool
    problems: list[str] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def readable(self, reader: Any, writer: Any, path: str) -> bool:
        """Whether reader accepts writer, without recording problems (for union branches)."""
        probe = _Walk(self.reader, self.writer, policy=False, seen=set(self.seen))
        probe.check(reader, writer, path)
        return not probe.problems

    def check(self, reader: Any, writer: Any, path: str) -> None:
        r, w = self.reader.deref(reader), self.writer.deref(writer)
        rk, wk = _kind(r), _kind(w)
        if wk == "union":
            for branch in w:
                self.check(reader, branch, path)
            return
        if rk == "union":
            if not any(self.readable(branch, w, path) for branch in r):
                self.fail(path, f"no branch of the reader's {_describe(r)} reads {_describe(w)}")
            return
        if rk != wk:
            if rk not in PROMOTIONS.get(wk, frozenset()):
                self.fail(path, f"type changed from {_describe(w)} to {_describe(r)}")
            return
        if rk in PRIMITIVES:
            return
        if rk in NAMED and r["name"] != w["name"] and w["name"] not in _qualified_aliases(r):
            self.fail(
                path,
                f"{rk} {w['name']} is now named {r['name']} with no alias for the old name",
            )
            return
        if rk == "fixed":
            if r["size"] != w["size"]:
                self.fail(path, f"fixed {r['name']} size changed from {w['size']} to {r['size']}")
        elif rk == "enum":
            self.check_enum(r, w, path)
        elif rk == "array":
            self.check(r["items"], w["items"], f"{path}[]")
        elif rk == "map":
            self.check(r["values"], w["values"], f"{path}{{}}")
        elif rk in ("record", "error"):
            self.check_record(r, w, path)

    def check_enum(self, r: dict[str, Any], w: dict[str, Any], path: str) -> None:
        r_symbols, w_symbols = list(r["symbols"]), list(w["symbols"])
        missing = [s for s in w_symbols if s not in r_symbols]
        if missing and "default" not in r:
            self.fail(
                path,
                f"enum {r['name']} lost symbols {missing} and has no default to read them as",
            )
        if not self.policy:
            return
        if missing and "default" in r:
            self.fail(path, f"enum {r['name']} lost symbols {missing}; enums only grow")
        added = [s for s in r_symbols if s not in w_symbols]
        if added and "default" not in r:
            self.fail(
                path,
                f"enum {r['name']} gained symbols {added} but declares no default symbol",
            )

    def check_record(self, r: dict[str, Any], w: dict[str, Any], path: str) -> None:
        key = (r["name"], w["name"])
        if key in self.seen:
            return  # a recursive type already being compared further up
        self.seen.add(key)
        w_fields = {f["name"]: f for f in w["fields"]}
        matched: set[str] = set()
        for rf in r["fields"]:
            names = [rf["name"], *rf.get("aliases", ())]
            wf = next((w_fields[n] for n in names if n in w_fields), None)
            where = f"{path}.{rf['name']}"
            if wf is None:
                if "default" not in rf:
                    self.fail(
                        where,
                        f"field is new (or renamed without an alias) and has no default, "
                        f"so records written by {w['name']}'s older version cannot be read",
                    )
                continue
            matched.add(wf["name"])
            self.check(rf["type"], wf["type"], where)
        if self.policy:
            for wf in w["fields"]:
                if wf["name"] not in matched and "default" not in wf:
                    self.fail(
                        f"{path}.{wf['name']}",
                        "field was removed but had no default; fields without a default "
                        "are never removed",
                    )


def resolution_problems(reader: Any, writer: Any, *, policy: bool = True) -> list[str]:
    """Why ``reader`` cannot read every record ``writer`` can write (empty list: it can).

    Both are Avro schemas as parsed JSON. ``policy`` adds the project's
    stricter evolution rules on top of the specification's resolution rules.
    """
    r_parsed, r_side = _parsed(reader)
    w_parsed, w_side = _parsed(writer)
    walk = _Walk(r_side, w_side, policy)
    root = r_parsed["name"] if isinstance(r_parsed, dict) and "name" in r_parsed else "$"
    walk.check(r_parsed, w_parsed, root)
    return walk.problems


def _samples(schema: Any, side: _Side, *, full: bool, depth: int = 0) -> Any:
    """A deterministic value of ``schema``: ``full`` takes non-null union branches,
    two array items and the last enum symbol; otherwise nulls, empties and firsts."""
    s = side.deref(schema)
    kind = _kind(s)
    if depth > 16:
        raise ValueError("schema nests too deeply to generate a sample")
    simple: dict[str, Any] = {
        "null": None,
        "boolean": full,
        "int": -(2**31) if full else 0,
        "long": 2**63 - 1 if full else 0,
        "float": 1.5 if full else 0.0,
        "double": -2.25 if full else 0.0,
        "bytes": b"\x00\xff" * 3 if full else b"",
        "string": "é€x" if full else "",
    }
    if kind in simple:
        return simple[kind]
    if kind == "union":
        branches = [b for b in s if side.deref(b) != "null"] if full else s
        return _samples((branches or s)[-1 if full else 0], side, full=full, depth=depth + 1)
    if kind == "fixed":
        return bytes(range(s["size"])) if full else bytes(s["size"])
    if kind == "enum":
        return s["symbols"][-1 if full else 0]
    if kind == "array":
        item = _samples(s["items"], side, full=full, depth=depth + 1)
        return [item, item] if full else []
    if kind == "map":
        value = _samples(s["values"], side, full=full, depth=depth + 1)
        return {"k": value} if full else {}
    return {f["name"]: _samples(f["type"], side, full=full, depth=depth + 1) for f in s["fields"]}


def sample_values(schema: Any) -> list[Any]:
    """Two deterministic values of a schema: one as full as possible, one minimal."""
    parsed, side = _parsed(schema)
    return [_samples(parsed, side, full=True), _samples(parsed, side, full=False)]


def round_trip_problems(reader: Any, writer: Any) -> list[str]:
    """Encode samples with ``writer`` and decode them with ``reader`` through fastavro."""
    w_parsed = parse_schema(writer, named_schemas={})
    r_parsed = parse_schema(reader, named_schemas={})
    problems = []
    for label, value in zip(("full", "minimal"), sample_values(writer), strict=True):
        buf = io.BytesIO()
        try:
            schemaless_writer(buf, w_parsed, value)
            buf.seek(0)
            schemaless_reader(buf, w_parsed, r_parsed)
        except Exception as exc:  # any failure is the finding
            problems.append(f"{label} sample: {type(exc).__name__}: {exc}")
    return problems


def _walk_named(schema: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, list):
        for branch in schema:
            yield from _walk_named(branch, path)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in NAMED:
            where = f"{path}({schema.get('name')})" if path else str(schema.get("name"))
            yield where, schema
            for f in schema.get("fields", ()):
                yield f"{where}.{f.get('name')}", f
                yield from _walk_named(f.get("type"), f"{where}.{f.get('name')}")
        elif kind == "array":
            yield from _walk_named(schema.get("items"), f"{path}[]")
        elif kind == "map":
            yield from _walk_named(schema.get("values"), f"{path}{{}}")


def lint_schema(schema: Any, namespace: str = "machpay") -> list[str]:
    """House rules for one schema file: a top-level record in ``namespace``,
    a doc on every named type and field, union defaults matching the first branch."""
    problems: list[str] = []
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return ["the top level must be a record"]
    if schema.get("namespace") != namespace:
        problems.append(f"the top-level record must declare namespace {namespace!r}")
    try:
        parse_schema(schema, named_schemas={})
    except Exception as exc:
        return [*problems, f"not a valid Avro schema: {exc}"]
    for where, node in _walk_named(schema, ""):
        if not str(node.get("doc", "")).strip():
            problems.append(f"{where}: missing doc")
        field_type = node.get("type")
        if "default" in node and "fields" not in node and isinstance(field_type, list):
            first = field_type[0]
            if first in PRIMITIVES and not validate(node["default"], first, raise_errors=False):
                problems.append(
                    f"{where}: default {node['default']!r} does not match the union's first "
                    f"branch {first!r}"
                )
            elif first not in PRIMITIVES:
                problems.append(f"{where}: a union with a default must start with a primitive")
    return problems


@dataclass(frozen=True, slots=True)
class Finding:
    subject: str
    version: int
    against: int | None
    """The older version compared with; None for findings about the version alone."""
    message: str

    def __str__(self) -> str:
        vs = f" vs v{self.against}" if self.against is not None else ""
        return f"{self.subject} v{self.version}{vs}: {self.message}"


def check_version(new: SchemaVersion, older: list[SchemaVersion]) -> list[Finding]:
    """Lint ``new`` and check it reads every version in ``older`` (structure, then samples)."""
    out = [Finding(new.subject, new.version, None, p) for p in lint_schema(new.schema)]
    for old in older:
        problems = resolution_problems(new.schema, old.schema)
        problems += [f"round trip: {p}" for p in round_trip_problems(new.schema, old.schema)]
        out += [Finding(new.subject, new.version, old.version, p) for p in problems]
    return out


def check_registry(registry: FileSchemaRegistry) -> list[Finding]:
    """Every version of every subject against all its previous versions (BACKWARD_TRANSITIVE).

    Loading the registry already verified ids, numbering and file hashes.
    """
    findings: list[Finding] = []
    for subject in registry.subjects():
        versions = registry.versions(subject)
        for i, version in enumerate(versions):
            findings += check_version(version, versions[:i])
    return findings
