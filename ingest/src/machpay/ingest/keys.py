"""API keys until the management API issues them: a file of key hashes.

The file (TOML or JSON, by extension) never holds a key, only its SHA-256::

    [[keys]]
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    name = "gateway-acme-1"
    role = "gateway"          # gateway: POST /v1/intents; agent: POST /v1/logs
    vendor = "Acme111..."     # optional: intents must pay this vendor
    # agent = "..."           # optional (agent role): logs must be this agent's
    # revoked = true          # refused with 401, like a removed key

A presented key is hashed and compared with the stored hashes using
:func:`hmac.compare_digest` over every entry, so the time taken does not
depend on how much of a hash matched. The file is re-read when its
modification time or size changes: removing or revoking a key takes effect
on the next request, without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from machpay.protocol import address_to_bytes

Role = Literal["gateway", "agent"]
ROLES: tuple[Role, ...] = ("gateway", "agent")


class KeyStoreError(ValueError):
    """The key file is missing or malformed; the message names the entry and field."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid key belongs to, and what it may send."""

    name: str
    role: Role
    vendor: bytes | None = None
    agent: bytes | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal
    revoked: bool


def hash_key(key: str) -> str:
    """The hex SHA-256 of an API key, as stored in the key file."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _address(where: str, field: str, value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise KeyStoreError(f"{where}: {field} must be a base58 address string")
    try:
        return address_to_bytes(value)
    except ValueError:
        raise KeyStoreError(f"{where}: {field} {value!r} is not a base58 address") from None


def parse_entries(data: Any, source: str) -> list[_Entry]:
    """Validate the decoded key file; KeyStoreError names the bad entry."""
    if not isinstance(data, dict) or not isinstance(data.get("keys", []), list):
        raise KeyStoreError(f"{source}: expected a top-level 'keys' list")
    entries: list[_Entry] = []
    seen: set[bytes] = set()
    allowed = {"sha256", "name", "role", "vendor", "agent", "revoked"}
    for i, item in enumerate(data.get("keys", [])):
        where = f"{source}: keys[{i}]"
        if not isinstance(item, dict):
            raise KeyStoreError(f"{where}: expected a table/object")
        unknown = set(item) - allowed
        if unknown:
            raise KeyStoreError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        digest_hex = item.get("sha256")
        try:
            digest = bytes.fromhex(digest_hex) if isinstance(digest_hex, str) else b""
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise KeyStoreError(f"{where}: sha256 must be 64 hex characters")
        if digest in seen:
            raise KeyStoreError(f"{where}: sha256 is listed twice")
        seen.add(digest)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise KeyStoreError(f"{where}: name must be a non-empty string")
        role = item.get("role")
        if role not in ROLES:
            raise KeyStoreError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
        revoked = item.get("revoked", False)
        if not isinstance(revoked, bool):
            raise KeyStoreError(f"{where}: revoked must be true or false")
        principal = Principal(
            name=name,
            role=role,
            vendor=_address(where, "vendor", item.get("vendor")),
            agent=_address(where, "agent", item.get("agent")),
        )
        entries.append(_Entry(digest, principal, revoked))
    return entries


class KeyStore:
    """The API keys of one key file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: list[_Entry] = []
        self.reload()

    def _load(self) -> list[_Entry]:
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise KeyStoreError(f"key file {self.path}: cannot read: {exc.strerror}") from exc
        try:
            if self.path.suffix.lower() == ".json":
                data = json.loads(raw)
            else:
                data = tomllib.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise KeyStoreError(f"key file {self.path}: not valid TOML/JSON: {exc}") from exc
        return parse_entries(data, f"key file {self.path}")

    def reload(self) -> None:
        """Read the file now; raises KeyStoreError (the old keys stay in use)."""
        stat = os.stat(self.path)
        entries = self._load()
        with self._lock:
            self._entries = entries
            self._stamp = (stat.st_mtime_ns, stat.st_size)

    def _refresh(self) -> None:
        try:
            stat = os.stat(self.path)
        except OSError:
            # A deleted key file revokes every key rather than keeping stale ones.
            with self._lock:
                self._entries, self._stamp = [], None
            return
        if (stat.st_mtime_ns, stat.st_size) != self._stamp:
            try:
                self.reload()
            except (KeyStoreError, OSError):
                with self._lock:  # a broken file revokes everything until it is fixed
                    self._entries, self._stamp = [], None

    def authenticate(self, key: str) -> Principal | None:
        """The principal of ``key``, or None when it is unknown or revoked."""
        self._refresh()
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        found: _Entry | None = None
        for entry in self._entries:  # every entry, so timing says nothing about matches
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        if found is None or found.revoked:
            return None
        return found.principal

    def __len__(self) -> int:
        return len(self._entries)
