"""`machpay schemas`: check, list, add and register the Avro wire schemas."""

from __future__ import annotations

import json
from pathlib import Path

import click

from machpay.wire.compat import check_registry, check_version
from machpay.wire.registry import (
    REGISTRY_FILE_NAME,
    FileSchemaRegistry,
    HttpSchemaRegistry,
    SchemaRegistryError,
    SchemaVersion,
    full_name,
    schema_sha256,
)

_REGISTRY_FILE = click.option(
    "--registry-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Offline registry file; default: schema_registry.registry_file, else the packaged one.",
)


def _settings_value(name: str) -> object:
    """A schema_registry setting when running under `machpay` (None standalone)."""
    from machpay.cli import AppContext

    app = click.get_current_context().find_object(AppContext)
    if app is None:
        return None
    return getattr(app.settings.schema_registry, name)


def _load(registry_file: Path | None) -> FileSchemaRegistry:
    if registry_file is None:
        configured = _settings_value("registry_file")
        registry_file = configured if isinstance(configured, Path) else None
    try:
        return FileSchemaRegistry(registry_file)
    except SchemaRegistryError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def schemas() -> None:
    """Avro wire schemas: compatibility checks and schema registry upload."""


@schemas.command("list")
@_REGISTRY_FILE
def list_(registry_file: Path | None) -> None:
    """Every subject's versions with their ids and files."""
    registry = _load(registry_file)
    for subject in registry.subjects():
        for v in registry.versions(subject):
            click.echo(f"{v.id:>6}  {subject} v{v.version}  {v.file}")


@schemas.command()
@_REGISTRY_FILE
def check(registry_file: Path | None) -> None:
    """Check every schema version against all its previous versions (BACKWARD_TRANSITIVE).

    Loading verifies ids (unique, never reused) and file hashes (published
    versions are immutable); then each version is linted and must read every
    older version, by structure and by a sample round trip.
    """
    registry = _load(registry_file)
    findings = check_registry(registry)
    for subject in registry.subjects():
        bad = [f for f in findings if f.subject == subject]
        n = len(registry.versions(subject))
        click.echo(f"{'FAIL' if bad else 'ok  '}  {subject} ({n} version{'s' * (n > 1)})")
        for f in bad:
            click.echo(f"        {f}")
    if findings:
        raise click.ClickException(f"{len(findings)} compatibility problem(s) in {registry.where}")


@schemas.command()
@click.argument("schema_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_REGISTRY_FILE
def add(schema_file: Path, registry_file: Path | None) -> None:
    """Add SCHEMA_FILE as the next version of its record, with the next free id.

    The file must sit under the registry file's folder (schemas/avro/...). It is
    checked against every earlier version first; nothing is written if it fails.
    """
    registry = _load(registry_file)
    if not isinstance(registry.location, Path):
        raise click.ClickException("the packaged registry is read-only; pass --registry-file")
    folder = registry.location.parent.resolve()
    try:
        relative = schema_file.resolve().relative_to(folder).as_posix()
    except ValueError:
        raise click.ClickException(f"{schema_file} is not under {folder}") from None
    try:
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        subject = full_name(schema)
    except ValueError as exc:
        raise click.ClickException(f"{schema_file}: {exc}") from exc
    older = registry.versions(subject) if registry.has_subject(subject) else []
    if any(v.file == relative for v in older):
        raise click.ClickException(f"{relative} is already registered")
    next_id = 1 + max((v.id for s in registry.subjects() for v in registry.versions(s)), default=0)
    new = SchemaVersion(subject, len(older) + 1, next_id, schema, relative)
    findings = check_version(new, older)
    if findings:
        for f in findings:
            click.echo(f"  {f}", err=True)
        raise click.ClickException(f"{relative} not added: {len(findings)} problem(s)")
    doc = json.loads(registry.location.read_text(encoding="utf-8"))
    doc["subjects"].setdefault(subject, []).append(
        {"version": new.version, "id": new.id, "file": relative, "sha256": schema_sha256(schema)}
    )
    registry.location.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    click.echo(f"added {subject} v{new.version} with schema id {new.id} to {registry.location}")


@schemas.command()
@click.option("--url", default=None, help="Registry URL; default: schema_registry.url.")
@_REGISTRY_FILE
def register(url: str | None, registry_file: Path | None) -> None:
    """Push every schema version to a Confluent-compatible registry, in id order.

    Sets each subject to BACKWARD_TRANSITIVE, asks the registry whether each
    version is compatible, registers it, and reports whether the registry's
    id equals the committed one (on a fresh registry, registering in id
    order reproduces them).
    """
    if url is None:
        configured = _settings_value("url")
        url = configured if isinstance(configured, str) else None
    if url is None:
        raise click.ClickException("no registry URL: pass --url or set schema_registry.url")
    registry = _load(registry_file)
    client = HttpSchemaRegistry(url)
    ordered = sorted(
        (v for s in registry.subjects() for v in registry.versions(s)), key=lambda v: v.id
    )
    configured_subjects: set[str] = set()
    differing = 0
    try:
        for v in ordered:
            if v.subject not in configured_subjects:
                client.set_compatibility(v.subject)
                configured_subjects.add(v.subject)
            if not client.is_compatible(v.subject, v.text):
                raise click.ClickException(
                    f"the registry refuses {v.subject} v{v.version} ({v.file}) as incompatible "
                    "with what it holds"
                )
            got = client.register(v.subject, v.text)
            note = "" if got == v.id else f"  (committed id {v.id} differs)"
            differing += got != v.id
            click.echo(f"{got:>6}  {v.subject} v{v.version}{note}")
    except SchemaRegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    if differing:
        click.echo(
            f"warning: {differing} id(s) differ from {REGISTRY_FILE_NAME}; processes using the "
            "offline registry and processes using this registry will not read each other's "
            "records. Use one source of ids per deployment.",
            err=True,
        )
