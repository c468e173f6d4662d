"""Schema ids: where they come from and how a writer schema is found by id.

Two implementations of :class:`SchemaRegistry`:

* :class:`FileSchemaRegistry` reads ``registry.json`` and the ``.avsc`` files
  beside it. Ids are assigned by hand, committed and never reused, so every
  process of a deployment agrees on them with no service running. It is also
  the *catalogue* of schemas this code was written against: the codec always
  takes its reader schemas from it, whichever registry hands out ids.
* :class:`HttpSchemaRegistry` talks to a Confluent-compatible schema registry
  over HTTP and caches what it learns (ids are immutable there too).

Subjects follow the RecordNameStrategy: subject = full name of the record
(``machpay.IntentBatch``), so one subject serves every topic carrying it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Protocol

REGISTRY_FILE_NAME = "registry.json"
COMPATIBILITY = "BACKWARD_TRANSITIVE"


class SchemaRegistryError(Exception):
    """The registry could not answer (unreachable, refused, malformed file).

    Not a property of the record being decoded: callers should retry or stop,
    never dead-letter the record because of it.
    """


class UnknownSchemaIdError(SchemaRegistryError, LookupError):
    """The registry answered, and it has no schema with this id."""

    def __init__(self, schema_id: int, where: str) -> None:
        super().__init__(f"schema id {schema_id} is not registered in {where}")
        self.schema_id = schema_id


def normalized_text(schema: Any) -> str:
    """The schema as compact JSON with sorted keys: what is hashed and registered."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def schema_sha256(schema: Any) -> str:
    """SHA-256 (hex) of :func:`normalized_text`: changes with any edit, docs and defaults too."""
    return hashlib.sha256(normalized_text(schema).encode()).hexdigest()


def full_name(schema: Any) -> str:
    """Full name of a named schema given as parsed JSON (``namespace.name``)."""
    if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
        raise ValueError("not a named Avro schema (expected a JSON object with a name)")
    name: str = schema["name"]
    namespace = schema.get("namespace")
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One registered version of a subject."""

    subject: str
    version: int
    id: int
    schema: dict[str, Any]
    """The schema as parsed JSON (as written in its file)."""
    file: str
    """Path of the ``.avsc`` file relative to the registry file's folder."""

    @property
    def text(self) -> str:
        return normalized_text(self.schema)


class SchemaRegistry(Protocol):
    """What the codec needs from a registry: writer schemas by id, ids by schema."""

    def schema_text(self, schema_id: int) -> str:
        """The JSON text of the schema registered under ``schema_id``.

        Raises :class:`UnknownSchemaIdError` when there is none, and
        :class:`SchemaRegistryError` when the registry cannot answer.
        """
        ...

    def id_for(self, subject: str, schema_text: str) -> int:
        """The id of this schema under ``subject`` (registering it if the registry allows)."""
        ...


def packaged_registry_file() -> Traversable:
    """The registry file shipped with machpay-core.

    Wheels carry it as ``machpay/wire/registry.json`` (with ``avro/`` beside
    it); editable installs do not, so fall back to the repository's
    ``schemas/`` folder.
    """
    packaged = resources.files("machpay.wire").joinpath(REGISTRY_FILE_NAME)
    if packaged.is_file():
        return packaged
    repo_file = Path(__file__).resolve().parents[4] / "schemas" / REGISTRY_FILE_NAME
    if repo_file.is_file():
        return repo_file
    raise SchemaRegistryError(
        f"no packaged schema registry: neither machpay/wire/{REGISTRY_FILE_NAME} "
        f"nor {repo_file} exists"
    )


class FileSchemaRegistry:
    """The committed registry: ``registry.json`` plus the ``.avsc`` files it names.

    ``registry.json`` layout::

        {"compatibility": "BACKWARD_TRANSITIVE",
         "subjects": {"machpay.IntentBatch": [
             {"version": 1, "id": 1, "file": "avro/machpay.IntentBatch.v1.avsc",
              "sha256": "<hex of the schema's normalized JSON>"}]}}

    Loading checks everything that keeps ids trustworthy: ids unique across
    subjects, versions numbered 1..n, each file's record named as its subject,
    and each file's content matching its recorded sha256 (a published version
    is immutable). A violation raises :class:`SchemaRegistryError`.
    """

    def __init__(self, registry_file: Traversable | Path | str | None = None) -> None:
        if registry_file is None:
            location: Traversable = packaged_registry_file()
        elif isinstance(registry_file, str):
            location = Path(registry_file)
        else:
            location = registry_file
        self.location = location
        self._versions: dict[str, list[SchemaVersion]] = {}
        self._by_id: dict[int, SchemaVersion] = {}
        self._id_by_text: dict[tuple[str, str], int] = {}
        self._load()

    @property
    def where(self) -> str:
        return str(self.location)

    def _read_json(self, node: Traversable, what: str) -> Any:
        try:
            return json.loads(node.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SchemaRegistryError(f"{what} {node} does not exist") from exc
        except (OSError, ValueError) as exc:
            raise SchemaRegistryError(f"{what} {node} is not readable JSON: {exc}") from exc

    def _load(self) -> None:
        doc = self._read_json(self.location, "schema registry file")
        subjects = doc.get("subjects") if isinstance(doc, dict) else None
        if not isinstance(subjects, dict):
            raise SchemaRegistryError(f"{self.where}: expected an object with 'subjects'")
        folder = self.location.parent if isinstance(self.location, Path) else None
        for subject, entries in subjects.items():
            if not isinstance(entries, list) or not entries:
                raise SchemaRegistryError(f"{self.where}: {subject}: expected a list of versions")
            versions: list[SchemaVersion] = []
            for expected_version, entry in enumerate(entries, start=1):
                versions.append(self._load_version(subject, expected_version, entry, folder))
            self._versions[subject] = versions

    def _load_version(
        self, subject: str, expected_version: int, entry: Any, folder: Path | None
    ) -> SchemaVersion:
        where = f"{self.where}: {subject}"
        try:
            version, schema_id, file, sha = (
                int(entry["version"]),
                int(entry["id"]),
                str(entry["file"]),
                str(entry["sha256"]),
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise SchemaRegistryError(
                f"{where}: each version needs integer 'version' and 'id', and 'file' and "
                f"'sha256' strings; got {entry!r}"
            ) from exc
        if version != expected_version:
            raise SchemaRegistryError(
                f"{where}: versions must be listed in order 1..n, found {version} "
                f"where {expected_version} belongs"
            )
        if schema_id < 1:
            raise SchemaRegistryError(f"{where} v{version}: schema id must be positive")
        if schema_id in self._by_id:
            other = self._by_id[schema_id]
            raise SchemaRegistryError(
                f"{where} v{version}: schema id {schema_id} is already used by "
                f"{other.subject} v{other.version}; ids are never reused"
            )
        node: Traversable = folder / file if folder is not None else self._sibling(file)
        schema = self._read_json(node, f"{subject} v{version} schema file")
        try:
            name = full_name(schema)
        except ValueError as exc:
            raise SchemaRegistryError(f"{where} v{version} ({file}): {exc}") from exc
        if name != subject:
            raise SchemaRegistryError(
                f"{where} v{version} ({file}): the record is named {name}, not {subject}"
            )
        actual = schema_sha256(schema)
        if actual != sha:
            raise SchemaRegistryError(
                f"{where} v{version} ({file}) does not match its sha256 in the registry "
                f"(file {actual}, registry {sha}): a published schema version is immutable; "
                "add a new version instead (see schemas/README.md)"
            )
        found = SchemaVersion(subject, version, schema_id, schema, file)
        self._by_id[schema_id] = found
        self._id_by_text[(subject, found.text)] = schema_id
        return found

    def _sibling(self, relative: str) -> Traversable:
        # A Traversable has no .parent: walk from the package root instead.
        node = resources.files("machpay.wire")
        for part in relative.split("/"):
            node = node.joinpath(part)
        return node

    # -- catalogue ---------------------------------------------------------------

    def subjects(self) -> list[str]:
        return list(self._versions)

    def versions(self, subject: str) -> list[SchemaVersion]:
        try:
            return list(self._versions[subject])
        except KeyError:
            raise KeyError(
                f"subject {subject!r} is not in {self.where}; known: {', '.join(self._versions)}"
            ) from None

    def latest(self, subject: str) -> SchemaVersion:
        return self.versions(subject)[-1]

    def has_subject(self, subject: str) -> bool:
        return subject in self._versions

    def by_id(self, schema_id: int) -> SchemaVersion:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise UnknownSchemaIdError(schema_id, self.where) from None

    # -- SchemaRegistry ----------------------------------------------------------

    def schema_text(self, schema_id: int) -> str:
        return self.by_id(schema_id).text

    def id_for(self, subject: str, schema_text: str) -> int:
        found = self._id_by_text.get((subject, schema_text))
        if found is None:
            raise SchemaRegistryError(
                f"this schema is not registered under {subject} in {self.where}; "
                "add it as a new version (see schemas/README.md)"
            )
        return found


_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class HttpSchemaRegistry:
    """Client of a Confluent-compatible schema registry (Confluent, Karapace, ...).

    Uses ``GET /schemas/ids/{id}``, ``POST /subjects/{subject}/versions``
    (register, idempotent), ``POST /subjects/{subject}`` (look up without
    registering), ``POST /compatibility/subjects/{subject}/versions/latest``
    and ``PUT /config/{subject}``. Answers are cached for the life of the
    object: a registered id never changes meaning.

    Blocking (urllib) by design: it is called once per schema id, on first
    use; call :meth:`machpay.wire.WireCodec.prepare` at start to take that
    off the hot path of encoding.
    """

    def __init__(self, url: str, *, timeout: float = 10.0, auto_register: bool = True) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"schema registry url must be http(s)://host[:port][/path], got {url!r}"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.auto_register = auto_register
        self._texts: dict[int, str] = {}
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise SchemaRegistryError(
                f"schema registry {self.url} unreachable ({method} {path}): {exc}"
            ) from exc
        try:
            payload = json.loads(raw) if raw else None
        except ValueError as exc:
            raise SchemaRegistryError(
                f"schema registry {self.url} answered {method} {path} with HTTP {status} "
                f"and a body that is not JSON: {raw[:200]!r}"
            ) from exc
        return status, payload

    def _fail(self, method: str, path: str, status: int, payload: Any) -> SchemaRegistryError:
        code = payload.get("error_code") if isinstance(payload, dict) else None
        message = payload.get("message") if isinstance(payload, dict) else payload
        return SchemaRegistryError(
            f"schema registry {self.url}: {method} {path} failed with HTTP {status}"
            f" (error_code {code}): {message}"
        )

    def schema_text(self, schema_id: int) -> str:
        cached = self._texts.get(schema_id)
        if cached is not None:
            return cached
        path = f"/schemas/ids/{int(schema_id)}"
        status, payload = self._request("GET", path)
        if status == 404:
            raise UnknownSchemaIdError(schema_id, f"schema registry {self.url}")
        if status != 200 or not isinstance(payload, dict) or "schema" not in payload:
            raise self._fail("GET", path, status, payload)
        schema_type = payload.get("schemaType", "AVRO")
        if schema_type != "AVRO":
            raise SchemaRegistryError(
                f"schema id {schema_id} in {self.url} is a {schema_type} schema, not Avro"
            )
        text = str(payload["schema"])
        with self._lock:
            self._texts[schema_id] = text
        return text

    def id_for(self, subject: str, schema_text: str) -> int:
        key = (subject, schema_text)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        quoted = urllib.parse.quote(subject, safe="")
        path = f"/subjects/{quoted}/versions" if self.auto_register else f"/subjects/{quoted}"
        status, payload = self._request("POST", path, {"schema": schema_text})
        if status == 404 and not self.auto_register:
            raise SchemaRegistryError(
                f"schema not registered under {subject} in {self.url} and auto_register is "
                "off: run `machpay schemas register` first"
            )
        if status != 200 or not isinstance(payload, dict) or "id" not in payload:
            raise self._fail("POST", path, status, payload)
        schema_id = int(payload["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._texts.setdefault(schema_id, schema_text)
        return schema_id

    def register(self, subject: str, schema_text: str) -> int:
        """Register (idempotently) and return the id, whatever ``auto_register`` says."""
        quoted = urllib.parse.quote(subject, safe="")
        path = f"/subjects/{quoted}/versions"
        status, payload = self._request("POST", path, {"schema": schema_text})
        if status != 200 or not isinstance(payload, dict) or "id" not in payload:
            raise self._fail("POST", path, status, payload)
        schema_id = int(payload["id"])
        with self._lock:
            self._ids[(subject, schema_text)] = schema_id
            self._texts.setdefault(schema_id, schema_text)
        return schema_id

    def is_compatible(self, subject: str, schema_text: str) -> bool:
        """Whether the registry accepts this schema as the next version of ``subject``.

        True for a subject the registry does not know yet (nothing to break).
        """
        quoted = urllib.parse.quote(subject, safe="")
        path = f"/compatibility/subjects/{quoted}/versions/latest"
        status, payload = self._request("POST", path, {"schema": schema_text})
        if status == 404 and isinstance(payload, dict) and payload.get("error_code") == 40401:
            return True
        if status != 200 or not isinstance(payload, dict) or "is_compatible" not in payload:
            raise self._fail("POST", path, status, payload)
        return bool(payload["is_compatible"])

    def set_compatibility(self, subject: str, level: str = COMPATIBILITY) -> None:
        quoted = urllib.parse.quote(subject, safe="")
        path = f"/config/{quoted}"
        status, payload = self._request("PUT", path, {"compatibility": level})
        if status != 200:
            raise self._fail("PUT", path, status, payload)
