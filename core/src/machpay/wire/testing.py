"""Hypothesis strategies for record values, built from the schemas themselves.

For tests only (needs ``hypothesis``, a development dependency)::

    from machpay.wire.testing import record_values

    @given(record_values("machpay.IntentBatch"))
    def test_something(batch): ...

Every value drawn encodes under the latest version of its schema.
"""

from __future__ import annotations

from typing import Any

from fastavro import parse_schema
from hypothesis import strategies as st

from machpay.wire.registry import FileSchemaRegistry

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def schema_strategy(schema: Any, *, max_items: int = 4) -> st.SearchStrategy[Any]:
    """Values of an Avro schema (parsed JSON). Floats exclude NaN so values compare equal."""
    named: dict[str, Any] = {}
    parsed = parse_schema(schema, named_schemas=named)
    cache: dict[str, st.SearchStrategy[Any]] = {}

    def build(node: Any) -> st.SearchStrategy[Any]:
        if isinstance(node, list):
            return st.one_of([build(branch) for branch in node])
        if isinstance(node, str) and node in named:
            if node not in cache:
                cache[node] = st.deferred(lambda: build(named[node]))
            return cache[node]
        kind = node if isinstance(node, str) else node["type"]
        match kind:
            case "null":
                return st.none()
            case "boolean":
                return st.booleans()
            case "int":
                return st.integers(*INT32)
            case "long":
                return st.integers(*INT64)
            case "float":
                return st.floats(allow_nan=False, width=32)
            case "double":
                return st.floats(allow_nan=False)
            case "bytes":
                return st.binary(max_size=128)
            case "string":
                return st.text(max_size=24)
            case "fixed":
                return st.binary(min_size=node["size"], max_size=node["size"])
            case "enum":
                return st.sampled_from(node["symbols"])
            case "array":
                return st.lists(build(node["items"]), max_size=max_items)
            case "map":
                return st.dictionaries(st.text(max_size=8), build(node["values"]), max_size=3)
            case "record" | "error":
                return st.fixed_dictionaries({f["name"]: build(f["type"]) for f in node["fields"]})
        raise ValueError(f"no strategy for Avro type {kind!r}")

    return build(parsed)


def record_values(
    subject: str, registry: FileSchemaRegistry | None = None, *, max_items: int = 4
) -> st.SearchStrategy[dict[str, Any]]:
    """Values of the latest version of ``subject`` (e.g. ``machpay.IntentBatch``)."""
    catalogue = registry if registry is not None else FileSchemaRegistry()
    return schema_strategy(catalogue.latest(subject).schema, max_items=max_items)
