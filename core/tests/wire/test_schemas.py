"""The committed schemas and registry: complete, documented, consistent, immutable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from machpay import topics
from machpay.wire import FileSchemaRegistry, SchemaRegistryError, packaged_registry_file
from machpay.wire.compat import check_registry, lint_schema


def test_every_topic_has_a_registered_schema(catalogue: FileSchemaRegistry) -> None:
    for topic in topics.ALL_TOPICS:
        assert catalogue.has_subject(topic.value_schema), topic.name
        assert catalogue.latest(topic.value_schema).schema["type"] == "record"


def test_every_registered_subject_is_carried_by_a_topic(catalogue: FileSchemaRegistry) -> None:
    carried = {t.value_schema for t in topics.ALL_TOPICS}
    assert set(catalogue.subjects()) == carried


def test_ids_are_unique_and_committed(catalogue: FileSchemaRegistry) -> None:
    ids = [v.id for s in catalogue.subjects() for v in catalogue.versions(s)]
    assert len(ids) == len(set(ids))
    # The v1 ids are part of the wire contract: changing them breaks stored records.
    v1 = {s: catalogue.versions(s)[0].id for s in catalogue.subjects()}
    assert v1 == {
        "machpay.IntentBatch": 1,
        "machpay.ClientLogBatch": 2,
        "machpay.RejectedIntent": 3,
        "machpay.FraudProof": 4,
        "machpay.AgentStatus": 5,
        "machpay.Batch": 6,
        "machpay.Settlement": 7,
        "machpay.ChainEvent": 8,
    }


def test_every_avsc_file_is_registered(repo_schemas: Path) -> None:
    doc = json.loads((repo_schemas / "registry.json").read_text())
    registered = {v["file"] for vs in doc["subjects"].values() for v in vs}
    on_disk = {f"avro/{p.name}" for p in (repo_schemas / "avro").glob("*.avsc")}
    assert on_disk == registered


def test_schemas_pass_lint_and_compatibility(catalogue: FileSchemaRegistry) -> None:
    assert [str(f) for f in check_registry(catalogue)] == []


def test_fixed_types_have_their_sizes(catalogue: FileSchemaRegistry) -> None:
    sizes = {"machpay.Pubkey": 32, "machpay.Hash32": 32, "machpay.Signature": 64}
    seen: dict[str, int] = {}

    def walk(node: Any, namespace: str) -> None:
        if isinstance(node, list):
            for n in node:
                walk(n, namespace)
        elif isinstance(node, dict):
            if node.get("type") == "fixed":
                seen[f"{namespace}.{node['name']}"] = node["size"]
            for f in node.get("fields", ()):
                walk(f["type"], namespace)
            for key in ("items", "values"):
                walk(node.get(key), namespace)

    for subject in catalogue.subjects():
        walk(catalogue.latest(subject).schema, "machpay")
    assert seen == sizes


def test_packaged_registry_is_found() -> None:
    location = packaged_registry_file()
    assert location.is_file()
    assert FileSchemaRegistry(location).subjects()


def test_lint_names_undocumented_fields() -> None:
    schema = {
        "type": "record",
        "name": "X",
        "namespace": "machpay",
        "doc": "x",
        "fields": [
            {"name": "a", "type": "long"},
            {"name": "b", "type": ["long", "null"], "default": None, "doc": "b"},
        ],
    }
    problems = lint_schema(schema)
    assert any("X.a: missing doc" in p for p in problems)
    assert any("X.b: default None does not match" in p for p in problems)


def _edit_registry(schemas_dir: Path, edit: Any) -> Path:
    registry_file = schemas_dir / "registry.json"
    doc = json.loads(registry_file.read_text())
    edit(doc)
    registry_file.write_text(json.dumps(doc))
    return registry_file


def test_editing_a_published_schema_is_refused(schemas_dir: Path) -> None:
    path = schemas_dir / "avro" / "machpay.Batch.v1.avsc"
    schema = json.loads(path.read_text())
    schema["fields"][0]["doc"] = "edited in place"
    path.write_text(json.dumps(schema))
    with pytest.raises(SchemaRegistryError, match=r"machpay\.Batch v1 .* immutable"):
        FileSchemaRegistry(schemas_dir / "registry.json")


def test_a_reused_id_is_refused(schemas_dir: Path) -> None:
    def reuse(doc: Any) -> None:
        doc["subjects"]["machpay.Batch"][0]["id"] = 1

    with pytest.raises(SchemaRegistryError, match="schema id 1 is already used"):
        FileSchemaRegistry(_edit_registry(schemas_dir, reuse))


def test_a_file_named_for_another_subject_is_refused(schemas_dir: Path) -> None:
    def swap(doc: Any) -> None:
        doc["subjects"]["machpay.Batch"][0]["file"] = "avro/machpay.Settlement.v1.avsc"

    with pytest.raises(SchemaRegistryError, match=r"named machpay\.Settlement, not machpay\.Batch"):
        FileSchemaRegistry(_edit_registry(schemas_dir, swap))


def test_a_missing_registry_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SchemaRegistryError, match="does not exist"):
        FileSchemaRegistry(tmp_path / "nope.json")
