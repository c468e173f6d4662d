"""The HTTP schema registry client.

No Confluent-compatible registry can run here (Karapace is not installable
from the package index, Confluent's is a JVM download), so these tests run
against a small in-process stand-in that implements the endpoints the client
uses, with Confluent's status codes and error codes. Set
MACHPAY_TEST_SCHEMA_REGISTRY_URL to run the registry-agnostic ones against a
real registry as well.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

from machpay import topics
from machpay.wire import (
    FileSchemaRegistry,
    HttpSchemaRegistry,
    SchemaRegistryError,
    WireCodec,
    WireDecodeError,
    frame,
)
from machpay.wire.cli import schemas
from machpay.wire.compat import resolution_problems

REAL_REGISTRY_ENV = "MACHPAY_TEST_SCHEMA_REGISTRY_URL"
WHERE = {"partition": 1, "offset": 2}


class StandInRegistry:
    """The subset of the Confluent schema registry REST API the client speaks."""

    def __init__(self) -> None:
        self.texts: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.config: dict[str, str] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()

    def compatible(self, subject: str, text: str) -> bool:
        level = self.config.get(subject, "BACKWARD")
        ids = self.subjects.get(subject, [])
        if level == "NONE" or not ids:
            return True
        against = ids if level.endswith("_TRANSITIVE") else ids[-1:]
        new = json.loads(text)
        return all(
            not resolution_problems(new, json.loads(self.texts[i]), policy=False) for i in against
        )

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append(f"{method} {path}")
            if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
                text = self.texts.get(int(m[1]))
                if method != "GET" or text is None:
                    return 404, {"error_code": 40403, "message": "Schema not found"}
                return 200, {"schema": text}
            if method == "PUT" and (m := re.fullmatch(r"/config/([^/]+)", path)):
                self.config[unquote(m[1])] = body["compatibility"]
                return 200, {"compatibility": body["compatibility"]}
            if method != "POST":
                return 405, {"error_code": 405, "message": "Method not allowed"}
            text = body["schema"]
            try:
                json.loads(text)
            except ValueError:
                return 422, {"error_code": 42201, "message": "Invalid schema"}
            if m := re.fullmatch(r"/compatibility/subjects/([^/]+)/versions/latest", path):
                subject = unquote(m[1])
                if subject not in self.subjects:
                    return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
                return 200, {"is_compatible": self.compatible(subject, text)}
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                subject = unquote(m[1])
                ids = self.subjects.setdefault(subject, [])
                existing = next((i for i in ids if self.texts[i] == text), None)
                if existing is not None:
                    return 200, {"id": existing}
                if not self.compatible(subject, text):
                    return 409, {
                        "error_code": 409,
                        "message": "Schema being registered is incompatible",
                    }
                same = next((i for i, t in self.texts.items() if t == text), None)
                new_id = same if same is not None else len(self.texts) + 1
                self.texts[new_id] = text
                ids.append(new_id)
                return 200, {"id": new_id}
            if m := re.fullmatch(r"/subjects/([^/]+)", path):
                subject = unquote(m[1])
                if subject not in self.subjects:
                    return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
                for version, i in enumerate(self.subjects[subject], start=1):
                    if self.texts[i] == text:
                        return 200, {
                            "subject": subject,
                            "version": version,
                            "id": i,
                            "schema": text,
                        }
                return 404, {"error_code": 40403, "message": "Schema not found"}
            return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}


@pytest.fixture
def standin() -> Iterator[tuple[str, StandInRegistry]]:
    state = StandInRegistry()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = state.handle(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# The "real" variant exists only when a registry is named: no registry can
# run on this machine, and a test that always skips would read as coverage.
REGISTRIES = ["stand-in"] + (["real"] if os.environ.get(REAL_REGISTRY_ENV) else [])


@pytest.fixture(params=REGISTRIES)
def registry_url(request: pytest.FixtureRequest, standin: tuple[str, StandInRegistry]) -> str:
    if request.param == "stand-in":
        return standin[0]
    return os.environ[REAL_REGISTRY_ENV]


def batch() -> dict[str, Any]:
    return {"producer": "ingest-2", "produced_at_ms": 9, "intents": []}


# -- against any registry ----------------------------------------------------------------


def test_records_round_trip_through_a_registry(
    registry_url: str, catalogue: FileSchemaRegistry
) -> None:
    writer = WireCodec(catalogue, HttpSchemaRegistry(registry_url))
    data = writer.encode(topics.INTENTS_ACCEPTED, batch())
    reader = WireCodec(catalogue, HttpSchemaRegistry(registry_url))  # knows no ids yet
    assert reader.decode(data, topic=topics.INTENTS_ACCEPTED, **WHERE) == batch()
    assert writer.prepare()["machpay.IntentBatch"] == writer.schema_id(topics.INTENTS_ACCEPTED)


def test_unknown_id_in_a_registry_is_a_decode_error(
    registry_url: str, catalogue: FileSchemaRegistry
) -> None:
    codec = WireCodec(catalogue, HttpSchemaRegistry(registry_url))
    with pytest.raises(WireDecodeError, match=r"\[1\]@2, schema id 2147483647: unknown_schema_id"):
        codec.decode(frame(2**31 - 1, b"\x00"), topic=topics.INTENTS_ACCEPTED, **WHERE)


def test_lookup_only_mode_finds_registered_schemas(
    registry_url: str, catalogue: FileSchemaRegistry
) -> None:
    HttpSchemaRegistry(registry_url).register(
        "machpay.Batch", catalogue.latest("machpay.Batch").text
    )
    codec = WireCodec(catalogue, HttpSchemaRegistry(registry_url, auto_register=False))
    assert codec.schema_id(topics.BATCHES_READY) > 0


# -- stand-in only (they assume a fresh registry) --------------------------------------------


def test_ids_are_fetched_once_and_cached(
    standin: tuple[str, StandInRegistry], catalogue: FileSchemaRegistry
) -> None:
    url, state = standin
    data = WireCodec(catalogue, HttpSchemaRegistry(url)).encode(topics.INTENTS_ACCEPTED, batch())
    reader = WireCodec(catalogue, HttpSchemaRegistry(url))
    for offset in range(5):
        reader.decode(data, topic=topics.INTENTS_ACCEPTED, partition=0, offset=offset)
    assert state.requests.count("GET /schemas/ids/1") == 1
    assert state.requests.count("POST /subjects/machpay.IntentBatch/versions") == 1


def test_register_command_reproduces_the_committed_ids_on_a_fresh_registry(
    standin: tuple[str, StandInRegistry], catalogue: FileSchemaRegistry
) -> None:
    url, state = standin
    result = CliRunner().invoke(schemas, ["register", "--url", url])
    assert result.exit_code == 0, result.output
    assert "differs" not in result.output
    assert state.config == dict.fromkeys(catalogue.subjects(), "BACKWARD_TRANSITIVE")
    offline = WireCodec(catalogue)
    online = WireCodec(catalogue, HttpSchemaRegistry(url, auto_register=False))
    assert online.prepare() == offline.prepare()
    value = batch()
    assert online.encode(topics.INTENTS_ACCEPTED, value) == offline.encode(
        topics.INTENTS_ACCEPTED, value
    )


def test_register_command_reports_ids_that_differ(standin: tuple[str, StandInRegistry]) -> None:
    url, _ = standin
    HttpSchemaRegistry(url).register(
        "other.Thing", '{"type":"record","name":"other.Thing","fields":[]}'
    )
    result = CliRunner().invoke(schemas, ["register", "--url", url])
    assert result.exit_code == 0
    assert "(committed id 1 differs)" in result.output
    assert "will not read each other's records" in result.output


def test_incompatible_schema_is_refused_by_the_registry(
    standin: tuple[str, StandInRegistry], catalogue: FileSchemaRegistry
) -> None:
    url, _ = standin
    client = HttpSchemaRegistry(url)
    client.set_compatibility("machpay.Batch")
    client.register("machpay.Batch", catalogue.latest("machpay.Batch").text)
    broken = json.loads(catalogue.latest("machpay.Batch").text)
    broken["fields"].append({"name": "shard", "type": "int", "doc": "no default"})
    text = json.dumps(broken)
    assert client.is_compatible("machpay.Batch", text) is False
    assert client.is_compatible("machpay.Unknown", text) is True
    with pytest.raises(SchemaRegistryError, match=r"HTTP 409 \(error_code 409\)"):
        client.register("machpay.Batch", text)


def test_lookup_only_mode_says_what_to_run(
    standin: tuple[str, StandInRegistry], catalogue: FileSchemaRegistry
) -> None:
    codec = WireCodec(catalogue, HttpSchemaRegistry(standin[0], auto_register=False))
    with pytest.raises(SchemaRegistryError, match="run `machpay schemas register` first"):
        codec.encode(topics.INTENTS_ACCEPTED, batch())


def test_old_records_decode_after_evolution_through_a_registry(
    standin: tuple[str, StandInRegistry], catalogue: FileSchemaRegistry, schemas_dir: Path
) -> None:
    url, _ = standin
    old = WireCodec(catalogue, HttpSchemaRegistry(url))
    record = old.encode(topics.SETTLEMENTS, settlement())
    v2 = json.loads(catalogue.latest("machpay.Settlement").text)
    v2["fields"].append({"name": "fee", "type": "long", "default": 0, "doc": "Fee, lamports."})
    (schemas_dir / "avro" / "machpay.Settlement.v2.avsc").write_text(json.dumps(v2))
    added = CliRunner().invoke(
        schemas,
        [
            "add",
            str(schemas_dir / "avro" / "machpay.Settlement.v2.avsc"),
            "--registry-file",
            str(schemas_dir / "registry.json"),
        ],
    )
    assert added.exit_code == 0, added.output
    new = WireCodec(FileSchemaRegistry(schemas_dir / "registry.json"), HttpSchemaRegistry(url))
    assert new.decode(record, topic=topics.SETTLEMENTS, **WHERE) == {**settlement(), "fee": 0}
    assert new.schema_id(topics.SETTLEMENTS) != old.schema_id(topics.SETTLEMENTS)


def settlement() -> dict[str, Any]:
    return {
        "batch_id": b"\x01" * 32,
        "vendor": b"\x02" * 32,
        "status": "CONFIRMED",
        "signature": "5" * 88,
        "slot": 12345,
        "reason": None,
        "channels": [
            {"channel": b"\x03" * 32, "agent": b"\x04" * 32, "settled_cumulative": 700, "paid": 70}
        ],
        "at_ms": 1,
    }


def test_an_unreachable_registry_is_not_the_records_fault(catalogue: FileSchemaRegistry) -> None:
    codec = WireCodec(catalogue, HttpSchemaRegistry("http://127.0.0.1:9", timeout=2))
    data = WireCodec(catalogue).encode(topics.INTENTS_ACCEPTED, batch())
    with pytest.raises(SchemaRegistryError, match="unreachable") as info:
        codec.decode(data, topic=topics.INTENTS_ACCEPTED, **WHERE)
    assert not isinstance(info.value, WireDecodeError)
    with pytest.raises(SchemaRegistryError, match="unreachable"):
        codec.encode(topics.INTENTS_ACCEPTED, batch())


def test_a_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpSchemaRegistry("localhost:8081")


def test_codec_from_settings(standin: tuple[str, StandInRegistry], schemas_dir: Path) -> None:
    from machpay.config import SchemaRegistrySettings

    offline = WireCodec.from_settings(
        SchemaRegistrySettings.model_validate({"registry_file": schemas_dir / "registry.json"})
    )
    assert offline.registry is offline.catalogue
    assert offline.catalogue.where == str(schemas_dir / "registry.json")
    settings = SchemaRegistrySettings.model_validate({"url": standin[0]})
    online = WireCodec.from_settings(settings, topic_prefix="t.")
    assert isinstance(online.registry, HttpSchemaRegistry)
    data = online.encode("t.intents.accepted", batch())
    assert offline.decode(data, topic="intents.accepted", **WHERE) == batch()
