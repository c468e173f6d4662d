"""Avro wire codec with Confluent framing, and the schema-id registry.

Schemas live in ``schemas/avro`` (packaged as ``machpay/wire/avro``); their
ids in ``schemas/registry.json``. See ``schemas/README.md`` for the evolution
rules and procedure.
"""

from machpay.wire.codec import (
    HEADER_SIZE,
    MAGIC,
    WireCodec,
    WireDecodeError,
    WireEncodeError,
    WireError,
    frame,
    parse_frame,
)
from machpay.wire.registry import (
    FileSchemaRegistry,
    HttpSchemaRegistry,
    SchemaRegistry,
    SchemaRegistryError,
    SchemaVersion,
    UnknownSchemaIdError,
    packaged_registry_file,
)

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "FileSchemaRegistry",
    "HttpSchemaRegistry",
    "SchemaRegistry",
    "SchemaRegistryError",
    "SchemaVersion",
    "UnknownSchemaIdError",
    "WireCodec",
    "WireDecodeError",
    "WireEncodeError",
    "WireError",
    "frame",
    "packaged_registry_file",
    "parse_frame",
]
