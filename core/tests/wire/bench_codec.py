"""Quick codec throughput check (not a test): IntentBatch of 100 intents.

    python core/tests/wire/bench_codec.py [--rounds 7] [--seconds 1.0]

Prints medians over rounds of records/s and intents/s for WireCodec encode
and decode, and the ratio against bare fastavro schemaless_writer/reader on
the same schema in the same run (the baseline).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from machpay import topics
from machpay.wire import WireCodec

INTENTS = 100


def batch() -> dict[str, Any]:
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


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            fn()
        n += 50
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()

    codec = WireCodec()
    checked = WireCodec(validate=True)
    value = batch()
    framed = codec.encode(topics.INTENTS_ACCEPTED, value)
    schema = parse_schema(codec.catalogue.latest("machpay.IntentBatch").schema)
    body = framed[5:]

    def bare_encode() -> bytes:
        buf = io.BytesIO()
        schemaless_writer(buf, schema, value)
        return buf.getvalue()

    cases: dict[str, Callable[[], object]] = {
        "fastavro encode (baseline)": bare_encode,
        "WireCodec.encode": lambda: codec.encode(topics.INTENTS_ACCEPTED, value),
        "WireCodec.encode validate=True": lambda: checked.encode(topics.INTENTS_ACCEPTED, value),
        "fastavro decode (baseline)": lambda: schemaless_reader(io.BytesIO(body), schema, None),
        "WireCodec.decode": lambda: codec.decode(
            framed, topic=topics.INTENTS_ACCEPTED, partition=0, offset=0
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            results[name].append(rate(fn, args.seconds))
    med = {name: statistics.median(r) for name, r in results.items()}
    print(f"IntentBatch of {INTENTS} intents, {len(framed)} bytes; medians of {args.rounds} rounds")
    for name, r in med.items():
        base = med[
            "fastavro encode (baseline)" if "encode" in name else "fastavro decode (baseline)"
        ]
        print(
            f"  {name:32} {r:>9,.0f} records/s  {r * INTENTS:>11,.0f} intents/s  "
            f"x{r / base:.2f} of baseline"
        )


if __name__ == "__main__":
    main()
