"""Avro values in the Confluent wire format.

A framed value is::

    byte 0      0x00 (magic)
    bytes 1..4  schema id, big-endian int32
    bytes 5..   Avro binary body, written with that schema

The writer schema is the latest local version of the record's subject; the
reader schema is always the latest local version, and the writer schema is
the one the id names, so records written before a schema evolved still decode.

Decoding never lets a bad record escape as anything but
:class:`WireDecodeError`, which names topic/partition/offset and keeps the
raw bytes for the dead-letter topic (:meth:`WireDecodeError.dead_letter`).
A registry that cannot answer raises
:class:`~machpay.wire.registry.SchemaRegistryError` instead: that is not the
record's fault and must not dead-letter it.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from machpay import topics
from machpay.topics import Topic
from machpay.wire.registry import (
    FileSchemaRegistry,
    HttpSchemaRegistry,
    SchemaRegistry,
    UnknownSchemaIdError,
    full_name,
)

if TYPE_CHECKING:
    from machpay.config import SchemaRegistrySettings

MAGIC = 0
HEADER_SIZE = 5
_MAX_DETAIL = 400


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro body with the magic byte and ``schema_id``."""
    return bytes((MAGIC,)) + schema_id.to_bytes(4, "big", signed=True) + body


def parse_frame(data: bytes) -> tuple[int, memoryview]:
    """Split a framed value into (schema id, body); ValueError if it is not framed."""
    if len(data) < HEADER_SIZE:
        raise ValueError(f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    if data[0] != MAGIC:
        raise ValueError(f"first byte is {data[0]:#04x}, not the magic byte 0x00")
    return int.from_bytes(data[1:HEADER_SIZE], "big", signed=True), memoryview(data)[HEADER_SIZE:]


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


class WireError(Exception):
    """Base of the codec's errors about values and records."""


class WireEncodeError(WireError, ValueError):
    """A value does not fit its schema; the message names the field."""

    def __init__(self, target: str, subject: str, detail: str) -> None:
        super().__init__(f"cannot encode {subject} for {target}: {detail}")
        self.target = target
        self.subject = subject
        self.detail = detail


class WireDecodeError(WireError):
    """A record value cannot be decoded. Keep :attr:`raw` and dead-letter it.

    :attr:`reason` is a machine-readable code: ``short_frame``, ``bad_magic``,
    ``unknown_schema_id``, ``wrong_record_type``, ``bad_avro`` or
    ``trailing_bytes``.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        topic: str,
        partition: int,
        offset: int,
        raw: bytes,
        schema_id: int | None = None,
    ) -> None:
        sid = f", schema id {schema_id}" if schema_id is not None else ""
        super().__init__(
            f"undecodable record at {topic}[{partition}]@{offset}{sid}: {reason}: {detail}"
        )
        self.reason = reason
        self.detail = detail
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.raw = raw
        self.schema_id = schema_id

    def dead_letter(self, *, source: str, at_ms: int) -> dict[str, Any]:
        """A ``machpay.RejectedIntent`` value recording this failure, raw bytes included."""
        from machpay.wire.rejected import dead_letter, record_origin

        return dead_letter(
            reason=self.reason,
            detail=str(self),
            source=source,
            at_ms=at_ms,
            raw=self.raw,
            origin=record_origin(self.topic, self.partition, self.offset),
            max_raw=None,
        )


@dataclass(frozen=True, slots=True)
class _Writer:
    subject: str
    schema_id: int
    header: bytes
    schema: Any  # parsed


@dataclass(frozen=True, slots=True)
class _Reader:
    subject: str
    writer: Any  # parsed writer schema
    reader: Any  # parsed reader schema, or None when it is the writer schema


class WireCodec:
    """Encodes and decodes MachPay record values. Thread-safe; build one per process.

    ``catalogue`` holds the schemas this code knows (reader schemas, and the
    writer schema of each subject: its latest version); by default the
    packaged one. ``registry`` hands out ids; by default the catalogue itself
    (the offline, committed ids). ``validate`` checks every value fully
    before writing (about 2x the encode cost): without it, a missing or extra
    field, a wrong type or a wrong-sized fixed still fail, but a bool or a
    float given for a long, or an out-of-range int, are written as ints.
    """

    def __init__(
        self,
        catalogue: FileSchemaRegistry | None = None,
        registry: SchemaRegistry | None = None,
        *,
        topic_prefix: str = "",
        validate: bool = False,
    ) -> None:
        self.catalogue = catalogue if catalogue is not None else FileSchemaRegistry()
        self.registry: SchemaRegistry = registry if registry is not None else self.catalogue
        self.topic_prefix = topic_prefix
        self.validate = validate
        self._parsed_latest: dict[str, Any] = {}
        self._writers: dict[str | Topic, _Writer] = {}
        self._readers: dict[int, _Reader] = {}
        self._expected: dict[str | Topic, tuple[str, str | None]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: SchemaRegistrySettings, *, topic_prefix: str = "", validate: bool = False
    ) -> WireCodec:
        """The codec a deployment's settings describe (offline registry unless ``url`` is set)."""
        catalogue = FileSchemaRegistry(
            Path(settings.registry_file) if settings.registry_file is not None else None
        )
        registry: SchemaRegistry = (
            HttpSchemaRegistry(settings.url) if settings.url is not None else catalogue
        )
        return cls(catalogue, registry, topic_prefix=topic_prefix, validate=validate)

    # -- names -----------------------------------------------------------------

    def subject_for(self, target: Topic | str) -> str:
        """The record full name a topic carries; a record full name maps to itself."""
        if isinstance(target, Topic):
            return target.value_schema
        if self.catalogue.has_subject(target):
            return target
        try:
            return topics.by_name(target, self.topic_prefix).value_schema
        except KeyError:
            raise WireEncodeError(
                target,
                "?",
                f"{target!r} is neither a topic nor a record in the catalogue "
                f"({', '.join(self.catalogue.subjects())})",
            ) from None

    def _latest_parsed(self, subject: str) -> Any:
        parsed = self._parsed_latest.get(subject)
        if parsed is None:
            parsed = parse_schema(self.catalogue.latest(subject).schema, named_schemas={})
            self._parsed_latest[subject] = parsed
        return parsed

    # -- encode ----------------------------------------------------------------

    def _writer(self, target: Topic | str) -> _Writer:
        found = self._writers.get(target)
        if found is not None:
            return found
        subject = self.subject_for(target)
        latest = self.catalogue.latest(subject)
        schema_id = self.registry.id_for(subject, latest.text)
        found = _Writer(subject, schema_id, frame(schema_id, b""), self._latest_parsed(subject))
        with self._lock:
            self._writers[target] = found
        return found

    def schema_id(self, target: Topic | str) -> int:
        """The id values for ``target`` (a topic or record name) are written with."""
        return self._writer(target).schema_id

    def prepare(self) -> dict[str, int]:
        """Resolve the writer id of every subject now (registering them when the
        registry does so), instead of on first encode; returns subject -> id."""
        return {s: self._writer(s).schema_id for s in self.catalogue.subjects()}

    def encode(self, target: Topic | str, value: Mapping[str, Any]) -> bytes:
        """Frame ``value`` as the record ``target`` (a Topic, topic name or record full name)."""
        w = self._writer(target)
        if self.validate:
            try:
                validate(value, w.schema, raise_errors=True)
            except ValidationError as exc:
                raise WireEncodeError(_target_name(target), w.subject, _clip(_errors(exc))) from exc
        buf = io.BytesIO()
        buf.write(w.header)
        try:
            schemaless_writer(buf, w.schema, value, strict=True)
        except Exception as exc:  # fastavro raises TypeError, ValueError, KeyError, ...
            raise WireEncodeError(
                _target_name(target), w.subject, self._explain(w.schema, value, exc)
            ) from exc
        return buf.getvalue()

    @staticmethod
    def _explain(schema: Any, value: Any, exc: Exception) -> str:
        """Name the offending field: fastavro's own message says 'on field x' at best,
        validation gives the record and field path."""
        try:
            validate(value, schema, raise_errors=True)
        except ValidationError as vexc:
            return _clip(_errors(vexc))
        except Exception:  # validation of a truly odd value may itself fail
            pass
        return _clip(f"{type(exc).__name__}: {exc}")

    # -- decode ----------------------------------------------------------------

    def _expected_for(self, topic: Topic | str) -> tuple[str, str | None]:
        found = self._expected.get(topic)
        if found is None:
            if isinstance(topic, Topic):
                found = (topic.qualified(self.topic_prefix), topic.value_schema)
            else:
                try:
                    found = (topic, topics.by_name(topic, self.topic_prefix).value_schema)
                except KeyError:
                    found = (topic, None)
            with self._lock:
                self._expected[topic] = found
        return found

    def _reader(self, schema_id: int) -> _Reader:
        found = self._readers.get(schema_id)
        if found is not None:
            return found
        text = self.registry.schema_text(schema_id)
        writer_json = json.loads(text)
        subject = full_name(writer_json)
        writer = parse_schema(writer_json, named_schemas={})
        reader: Any = None
        if self.catalogue.has_subject(subject):
            latest = self.catalogue.latest(subject)
            if latest.schema != writer_json:
                reader = self._latest_parsed(subject)
        found = _Reader(subject, writer, reader)
        with self._lock:
            self._readers[schema_id] = found
        return found

    def decode(
        self, data: bytes, *, topic: Topic | str, partition: int, offset: int
    ) -> dict[str, Any]:
        """Decode one record value read from ``topic``/``partition`` at ``offset``.

        Raises :class:`WireDecodeError` for anything wrong with the bytes.
        """
        topic_name, expected = self._expected_for(topic)

        def fail(reason: str, detail: str, schema_id: int | None = None) -> WireDecodeError:
            return WireDecodeError(
                reason,
                detail,
                topic=topic_name,
                partition=partition,
                offset=offset,
                raw=bytes(data),
                schema_id=schema_id,
            )

        if len(data) < HEADER_SIZE:
            raise fail(
                "short_frame",
                f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte wire-format header",
            )
        if data[0] != MAGIC:
            raise fail("bad_magic", f"first byte is {data[0]:#04x}, not the magic byte 0x00")
        schema_id = int.from_bytes(data[1:HEADER_SIZE], "big", signed=True)
        try:
            r = self._reader(schema_id)
        except UnknownSchemaIdError as exc:
            raise fail("unknown_schema_id", str(exc), schema_id) from exc
        if expected is not None and r.subject != expected:
            raise fail(
                "wrong_record_type",
                f"the schema id names {r.subject}, but this topic carries {expected}",
                schema_id,
            )
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            value = schemaless_reader(buf, r.writer, r.reader)
        except Exception as exc:  # any failure to read untrusted bytes is the record's fault
            raise fail(
                "bad_avro",
                _clip(f"not a valid {r.subject} body: {type(exc).__name__}: {exc}"),
                schema_id,
            ) from exc
        end = buf.tell()
        if end != len(data):
            raise fail(
                "trailing_bytes",
                f"{len(data) - end} bytes left after a complete {r.subject} "
                f"(body ends at byte {end} of {len(data)})",
                schema_id,
            )
        if not isinstance(value, dict):
            raise fail("bad_avro", f"decoded a {type(value).__name__}, not a record", schema_id)
        return value


def _target_name(target: Topic | str) -> str:
    return target.name if isinstance(target, Topic) else target


def _errors(exc: ValidationError) -> str:
    messages = getattr(exc, "errors", None) or [str(exc)]
    return "; ".join(str(m) for m in messages)
