"""Borsh encoding and decoding of Anchor IDL types (IDL spec 0.1.0, Anchor >= 0.30).

A type from the IDL is compiled once into a :class:`BorshType` (an encoder and
a decoder over ``bytes``), so encoding an instruction or decoding an event is a
walk over closures, not over JSON. Python values per IDL type:

=====================  ====================================================
IDL type               Python value
=====================  ====================================================
``bool``               ``bool``
``u8`` .. ``i256``     ``int`` (range-checked)
``f32`` / ``f64``      ``float``
``bytes``              ``bytes`` (u32 length prefix)
``string``             ``str`` (UTF-8, u32 length prefix)
``pubkey``             ``bytes`` of length 32 (raw, not base58)
``{"array": [T, N]}``  ``bytes`` when T is ``u8``, else ``list`` of N values
``{"vec": T}``         ``list`` (``bytes`` when T is ``u8``)
``{"option": T}``      ``None`` or the value (1-byte tag)
``{"coption": T}``     ``None`` or the value (4-byte tag, fixed size)
``{"defined": ...}``   a struct: ``dict`` by field name (``tuple`` for tuple
                       structs); an enum: :class:`Variant`
=====================  ====================================================

Errors are :class:`BorshError` naming the path of the offending field
(``settle.args.leaf_count``), so a bad value or a short account says where.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BorshError", "BorshType", "TypeRegistry", "Variant"]


class BorshError(ValueError):
    """A value does not fit its IDL type, or bytes do not decode as it; names the field."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Variant:
    """One value of an IDL enum: the variant's name and its fields (None for a unit variant)."""

    name: str
    fields: dict[str, Any] | tuple[Any, ...] | None = None


Encoder = Callable[[Any, bytearray, str], None]
Decoder = Callable[[bytes, int, str], tuple[Any, int]]


@dataclass(frozen=True, slots=True)
class BorshType:
    """A compiled IDL type: ``encode(value) -> bytes`` and ``decode(data) -> value``."""

    spec: Any
    """The IDL JSON this was compiled from."""
    write: Encoder
    read: Decoder
    size: int | None
    """Fixed encoded size in bytes, or None when it depends on the value."""

    def encode(self, value: Any, path: str = "value") -> bytes:
        out = bytearray()
        self.write(value, out, path)
        return bytes(out)

    def decode(self, data: bytes, path: str = "value", *, exact: bool = True) -> Any:
        """Decode ``data``; with ``exact`` trailing bytes are an error (else ignored)."""
        value, end = self.read(data, 0, path)
        if exact and end != len(data):
            raise BorshError(path, f"{len(data) - end} trailing bytes after the value")
        return value

    def decode_prefix(self, data: bytes, offset: int = 0, path: str = "value") -> tuple[Any, int]:
        """Decode one value at ``offset``; returns it and the offset just past it."""
        return self.read(data, offset, path)


_INTS: dict[str, tuple[int, bool]] = {
    "u8": (1, False),
    "i8": (1, True),
    "u16": (2, False),
    "i16": (2, True),
    "u32": (4, False),
    "i32": (4, True),
    "u64": (8, False),
    "i64": (8, True),
    "u128": (16, False),
    "i128": (16, True),
    "u256": (32, False),
    "i256": (32, True),
}
_FLOATS = {"f32": struct.Struct("<f"), "f64": struct.Struct("<d")}


def _need(data: bytes, offset: int, n: int, path: str) -> None:
    if offset + n > len(data):
        raise BorshError(
            path, f"needs {n} bytes at offset {offset}, only {len(data) - offset} left"
        )


def _int_type(name: str) -> BorshType:
    width, signed = _INTS[name]
    low = -(1 << (8 * width - 1)) if signed else 0
    high = (1 << (8 * width - 1)) - 1 if signed else (1 << (8 * width)) - 1

    def write(value: Any, out: bytearray, path: str) -> None:
        # bool is an int subclass; True as an amount is a bug, not 1.
        if type(value) is not int:
            raise BorshError(path, f"expected an integer ({name}), got {type(value).__name__}")
        if not low <= value <= high:
            raise BorshError(path, f"{value} is outside the {name} range {low}..{high}")
        out += value.to_bytes(width, "little", signed=signed)

    def read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
        _need(data, offset, width, path)
        end = offset + width
        return int.from_bytes(data[offset:end], "little", signed=signed), end

    return BorshType(name, write, read, width)


def _float_type(name: str) -> BorshType:
    codec = _FLOATS[name]

    def write(value: Any, out: bytearray, path: str) -> None:
        if type(value) not in (float, int):
            raise BorshError(path, f"expected a number ({name}), got {type(value).__name__}")
        out += codec.pack(value)

    def read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
        _need(data, offset, codec.size, path)
        return codec.unpack_from(data, offset)[0], offset + codec.size

    return BorshType(name, write, read, codec.size)


def _bool_write(value: Any, out: bytearray, path: str) -> None:
    if type(value) is not bool:
        raise BorshError(path, f"expected a bool, got {type(value).__name__}")
    out.append(1 if value else 0)


def _bool_read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
    _need(data, offset, 1, path)
    tag = data[offset]
    if tag > 1:
        raise BorshError(path, f"bool byte is {tag}, not 0 or 1")
    return tag == 1, offset + 1


def _fixed_bytes(n: int, label: str) -> BorshType:
    def write(value: Any, out: bytearray, path: str) -> None:
        raw = (
            bytes(value) if hasattr(value, "__bytes__") and not isinstance(value, bytes) else value
        )
        if not isinstance(raw, bytes) or len(raw) != n:
            got = f"{len(raw)} bytes" if isinstance(raw, bytes) else type(value).__name__
            raise BorshError(path, f"expected {n} bytes ({label}), got {got}")
        out += raw

    def read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
        _need(data, offset, n, path)
        return bytes(data[offset : offset + n]), offset + n

    return BorshType(label, write, read, n)


def _u32_len(data: bytes, offset: int, path: str) -> tuple[int, int]:
    _need(data, offset, 4, path)
    return int.from_bytes(data[offset : offset + 4], "little"), offset + 4


def _bytes_write(value: Any, out: bytearray, path: str) -> None:
    if not isinstance(value, bytes | bytearray):
        raise BorshError(path, f"expected bytes, got {type(value).__name__}")
    out += len(value).to_bytes(4, "little")
    out += value


def _bytes_read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
    n, offset = _u32_len(data, offset, path)
    _need(data, offset, n, path)
    return bytes(data[offset : offset + n]), offset + n


def _string_write(value: Any, out: bytearray, path: str) -> None:
    if not isinstance(value, str):
        raise BorshError(path, f"expected a string, got {type(value).__name__}")
    raw = value.encode("utf-8")
    out += len(raw).to_bytes(4, "little")
    out += raw


def _string_read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
    raw, end = _bytes_read(data, offset, path)
    try:
        return raw.decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise BorshError(path, f"string is not UTF-8: {exc}") from None


_PRIMITIVES: dict[str, BorshType] = {
    **{name: _int_type(name) for name in _INTS},
    **{name: _float_type(name) for name in _FLOATS},
    "bool": BorshType("bool", _bool_write, _bool_read, 1),
    "pubkey": _fixed_bytes(32, "pubkey"),
    "bytes": BorshType("bytes", _bytes_write, _bytes_read, None),
    "string": BorshType("string", _string_write, _string_read, None),
}


def _array(inner: BorshType, n: int, spec: Any) -> BorshType:
    if inner.spec == "u8":
        return _fixed_bytes(n, f"[u8; {n}]")

    def write(value: Any, out: bytearray, path: str) -> None:
        if not isinstance(value, list | tuple) or len(value) != n:
            got = f"{len(value)} items" if isinstance(value, list | tuple) else type(value).__name__
            raise BorshError(path, f"expected a list of {n} items, got {got}")
        for i, item in enumerate(value):
            inner.write(item, out, f"{path}[{i}]")

    def read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
        items = []
        for i in range(n):
            item, offset = inner.read(data, offset, f"{path}[{i}]")
            items.append(item)
        return items, offset

    return BorshType(spec, write, read, None if inner.size is None else inner.size * n)


def _vec(inner: BorshType, spec: Any) -> BorshType:
    if inner.spec == "u8":
        return BorshType(spec, _bytes_write, _bytes_read, None)

    def write(value: Any, out: bytearray, path: str) -> None:
        if not isinstance(value, list | tuple):
            raise BorshError(path, f"expected a list, got {type(value).__name__}")
        out += len(value).to_bytes(4, "little")
        for i, item in enumerate(value):
            inner.write(item, out, f"{path}[{i}]")

    def read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
        n, offset = _u32_len(data, offset, path)
        # A hostile length cannot make us allocate more items than bytes remain.
        if inner.size and n * inner.size > len(data) - offset:
            raise BorshError(path, f"vec of {n} items does not fit in {len(data) - offset} bytes")
        items = []
        for i in range(n):
            item, offset = inner.read(data, offset, f"{path}[{i}]")
            items.append(item)
        return items, offset

    return BorshType(spec, write, read, None)


def _option(inner: BorshType, spec: Any, *, tag_width: int) -> BorshType:
    fixed = tag_width == 4  # COption always occupies the full width

    def write(value: Any, out: bytearray, path: str) -> None:
        if value is None:
            out += bytes(tag_width)
            if fixed:
                if inner.size is None:
                    raise BorshError(path, "coption of a variable-size type")
                out += bytes(inner.size)
            return
        out += (1).to_bytes(tag_width, "little")
        inner.write(value, out, path)

    def read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
        _need(data, offset, tag_width, path)
        tag = int.from_bytes(data[offset : offset + tag_width], "little")
        offset += tag_width
        if tag == 0:
            if fixed and inner.size is not None:
                _need(data, offset, inner.size, path)
                offset += inner.size
            return None, offset
        if tag != 1:
            raise BorshError(path, f"option tag is {tag}, not 0 or 1")
        return inner.read(data, offset, path)

    size = (tag_width + inner.size) if fixed and inner.size is not None else None
    return BorshType(spec, write, read, size)


def _fields_codec(fields: Any, spec: Any, resolve: Callable[[Any], BorshType]) -> BorshType:
    """Named fields (dict) or tuple fields (tuple); ``None``/[] is a unit."""
    if not fields:
        return BorshType(spec, _unit_write, _unit_read, 0)
    if isinstance(fields[0], dict):
        named = [(f["name"], resolve(f["type"])) for f in fields]
        names = {n for n, _ in named}

        def write(value: Any, out: bytearray, path: str) -> None:
            if not isinstance(value, Mapping):
                raise BorshError(path, f"expected a mapping of fields, got {type(value).__name__}")
            extra = set(value) - names
            if extra:
                raise BorshError(path, f"unknown fields {sorted(extra)}")
            for name, codec in named:
                if name not in value:
                    raise BorshError(f"{path}.{name}", "missing")
                codec.write(value[name], out, f"{path}.{name}")

        def read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
            result: dict[str, Any] = {}
            for name, codec in named:
                result[name], offset = codec.read(data, offset, f"{path}.{name}")
            return result, offset

        sizes = [c.size for _, c in named]
    else:
        items = [resolve(t) for t in fields]

        def write(value: Any, out: bytearray, path: str) -> None:
            if not isinstance(value, tuple | list) or len(value) != len(items):
                raise BorshError(path, f"expected a tuple of {len(items)} values")
            for i, (codec, item) in enumerate(zip(items, value, strict=True)):
                codec.write(item, out, f"{path}.{i}")

        def read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
            result = []
            for i, codec in enumerate(items):
                item, offset = codec.read(data, offset, f"{path}.{i}")
                result.append(item)
            return tuple(result), offset

        sizes = [c.size for c in items]
    size = None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)
    return BorshType(spec, write, read, size)


def _unit_write(value: Any, out: bytearray, path: str) -> None:
    if value not in (None, {}, ()):
        raise BorshError(path, f"expected no fields, got {value!r}")


def _unit_read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
    return None, offset


def _enum(
    variants: list[dict[str, Any]], spec: Any, resolve: Callable[[Any], BorshType]
) -> BorshType:
    if len(variants) > 256:
        raise BorshError(str(spec), "an enum has at most 256 variants")
    codecs = [(v["name"], _fields_codec(v.get("fields"), spec, resolve)) for v in variants]
    index = {name: i for i, (name, _) in enumerate(codecs)}

    def write(value: Any, out: bytearray, path: str) -> None:
        if isinstance(value, str):
            value = Variant(value)
        if not isinstance(value, Variant):
            raise BorshError(path, f"expected a Variant, got {type(value).__name__}")
        i = index.get(value.name)
        if i is None:
            raise BorshError(path, f"unknown variant {value.name!r}; known: {list(index)}")
        out.append(i)
        codecs[i][1].write(value.fields, out, f"{path}.{value.name}")

    def read(data: bytes, offset: int, path: str) -> tuple[Any, int]:
        _need(data, offset, 1, path)
        i = data[offset]
        if i >= len(codecs):
            raise BorshError(path, f"variant index {i} is out of range (0..{len(codecs) - 1})")
        name, codec = codecs[i]
        fields, offset = codec.read(data, offset + 1, f"{path}.{name}")
        return Variant(name, fields), offset

    sizes = {c.size for _, c in codecs}
    only = next(iter(sizes)) if len(sizes) == 1 else None
    return BorshType(spec, write, read, None if only is None else 1 + only)


class TypeRegistry:
    """The IDL's ``types`` section, compiled on demand (recursion-safe for the IDL's DAG)."""

    def __init__(self, types: list[dict[str, Any]]) -> None:
        self._defs: dict[str, dict[str, Any]] = {}
        for t in types:
            name = t.get("name")
            if not isinstance(name, str) or "type" not in t:
                raise BorshError("types", f"type definition without name or type: {t!r}")
            if t.get("generics"):
                raise BorshError(f"types.{name}", "generic type definitions are not supported")
            serialization = t.get("serialization", "borsh")
            if serialization != "borsh":
                raise BorshError(
                    f"types.{name}",
                    f"serialization {serialization!r} is not supported (borsh only)",
                )
            self._defs[name] = t
        self._compiled: dict[str, BorshType] = {}
        self._busy: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._defs

    def defined(self, name: str) -> BorshType:
        """The codec of the type definition ``name``."""
        compiled = self._compiled.get(name)
        if compiled is not None:
            return compiled
        definition = self._defs.get(name)
        if definition is None:
            raise BorshError(f"types.{name}", "is not defined in the IDL")
        if name in self._busy:
            raise BorshError(f"types.{name}", "is recursive, which Borsh cannot size")
        self._busy.add(name)
        try:
            body = definition["type"]
            kind = body.get("kind")
            if kind == "struct":
                compiled = _fields_codec(body.get("fields"), name, self.compile)
            elif kind == "enum":
                compiled = _enum(body.get("variants", []), name, self.compile)
            elif kind == "type":
                compiled = self.compile(body["alias"])
            else:
                raise BorshError(f"types.{name}", f"type kind {kind!r} is not supported")
        finally:
            self._busy.discard(name)
        self._compiled[name] = compiled
        return compiled

    def compile(self, spec: Any) -> BorshType:
        """The codec of an IDL type expression (``"u64"``, ``{"vec": ...}``, ...)."""
        if isinstance(spec, str):
            prim = _PRIMITIVES.get(spec)
            if prim is None:
                raise BorshError(str(spec), f"unknown IDL type {spec!r}")
            return prim
        if not isinstance(spec, dict) or len(spec) != 1:
            raise BorshError(str(spec), f"malformed IDL type {spec!r}")
        ((key, arg),) = spec.items()
        if key == "array":
            inner, n = arg
            if not isinstance(n, int):
                raise BorshError(str(spec), "generic array lengths are not supported")
            return _array(self.compile(inner), n, spec)
        if key == "vec":
            return _vec(self.compile(arg), spec)
        if key == "option":
            return _option(self.compile(arg), spec, tag_width=1)
        if key == "coption":
            return _option(self.compile(arg), spec, tag_width=4)
        if key == "defined":
            name = arg["name"] if isinstance(arg, dict) else arg
            if isinstance(arg, dict) and arg.get("generics"):
                raise BorshError(str(spec), "generic type arguments are not supported")
            return self.defined(name)
        raise BorshError(str(spec), f"unknown IDL type {key!r}")
