"""Avro wire codec throughput against bare fastavro in the same run.

One IntentBatch record of 100 intents (the shape gateways produce), framed in
the Confluent wire format. Baseline: fastavro schemaless_writer/reader on the
same parsed schema, no framing, no registry lookups.
"""

from __future__ import annotations

import io
import os
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from bench.harness import Figure, median, rate, record
from machpay import topics
from machpay.wire import WireCodec

INTENTS = 100


def _batch() -> dict[str, Any]:
    return {
        "producer": "gw-1",
        "produced_at_ms": 1_700_000_000_000,
        "intents": [
            {
                "id": os.urandom(32),
                "message": os.urandom(97),
                "signature": os.urandom(64),
                "agent": os.urandom(32),
                "vendor": os.urandom(32),
                "service": "search",
                "route": "GET /v1/search",
                "accepted_at_ms": 1_700_000_000_000 + n,
                "source": "GATEWAY",
            }
            for n in range(INTENTS)
        ],
    }


def main() -> None:
    codec = WireCodec()
    value = _batch()
    framed = codec.encode(topics.INTENTS_ACCEPTED, value)
    schema_id = codec.schema_id(topics.INTENTS_ACCEPTED)
    schema = parse_schema(codec.catalogue.by_id(schema_id).schema)
    body = framed[5:]

    def bare_encode() -> int:
        buf = io.BytesIO()
        schemaless_writer(buf, schema, value)
        return INTENTS

    def bare_decode() -> int:
        schemaless_reader(io.BytesIO(body), schema, schema)
        return INTENTS

    def our_encode() -> int:
        codec.encode(topics.INTENTS_ACCEPTED, value)
        return INTENTS

    def our_decode() -> int:
        codec.decode(framed, topic=topics.INTENTS_ACCEPTED, partition=0, offset=0)
        return INTENTS

    be, oe, bd, od = [], [], [], []
    for _ in range(5):
        be += rate(bare_encode, repeat=1)
        oe += rate(our_encode, repeat=1)
        bd += rate(bare_decode, repeat=1)
        od += rate(our_decode, repeat=1)
    record(
        "wire",
        [
            Figure(
                "Avro encode, intents/s (100 per record)",
                median(oe),
                "/s",
                "bare fastavro",
                median(be),
                runs=oe,
            ),
            Figure(
                "Avro decode, intents/s (100 per record)",
                median(od),
                "/s",
                "bare fastavro",
                median(bd),
                runs=od,
            ),
        ],
        command="python -m bench wire",
    )
