"""Fixtures for the wire tests: the packaged codec and throwaway copies of the schemas."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from machpay.wire import FileSchemaRegistry, WireCodec
from machpay.wire.registry import schema_sha256

REPO_SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


@pytest.fixture(scope="session")
def repo_schemas() -> Path:
    return REPO_SCHEMAS


@pytest.fixture(scope="session")
def catalogue() -> FileSchemaRegistry:
    return FileSchemaRegistry()


@pytest.fixture(scope="session")
def codec(catalogue: FileSchemaRegistry) -> WireCodec:
    return WireCodec(catalogue)


@pytest.fixture
def schemas_dir(tmp_path: Path) -> Path:
    """A writable copy of schemas/ (registry.json + avro/)."""
    target = tmp_path / "schemas"
    shutil.copytree(REPO_SCHEMAS / "avro", target / "avro")
    shutil.copy(REPO_SCHEMAS / "registry.json", target / "registry.json")
    return target


AddVersion = Callable[[dict[str, Any]], Path]


@pytest.fixture
def add_version(schemas_dir: Path) -> AddVersion:
    """Write a schema as the next version of its subject (next free id), bypassing checks."""

    def add(schema: dict[str, Any]) -> Path:
        registry_file = schemas_dir / "registry.json"
        doc = json.loads(registry_file.read_text())
        subject = f"{schema['namespace']}.{schema['name']}"
        versions = doc["subjects"].setdefault(subject, [])
        next_id = 1 + max(v["id"] for vs in doc["subjects"].values() for v in vs)
        relative = f"avro/{subject}.v{len(versions) + 1}.avsc"
        (schemas_dir / relative).write_text(json.dumps(schema, indent=2))
        versions.append(
            {
                "version": len(versions) + 1,
                "id": next_id,
                "file": relative,
                "sha256": schema_sha256(schema),
            }
        )
        registry_file.write_text(json.dumps(doc, indent=2))
        return registry_file

    return add
