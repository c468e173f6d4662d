"""Write-ahead journal of every transaction the settler signs (SQLite in ``settle.state_dir``).

A transaction's signature is known the moment it is signed, before it is
sent. The journal stores it, the signed bytes and the last block height at
which it can land, fsync'd, *before* the SUBMITTED record and before the
send. After a crash the settler therefore knows every transaction that may
be in flight, rebroadcasts it (same bytes, same signature: it can land at most
once) and waits until it either lands, giving its CONFIRMED or FAILED record,
or can no longer land (block height past ``last_valid``), giving FAILED
``expired``. Only then does it re-read the channels and submit anew, so a
settlement is never left unrecorded, and a channel never pays twice (the
program moves it forward only).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = ["Attempt", "AttemptState", "Journal"]


class AttemptState(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Attempt:
    signature: str
    kind: str
    """``settle`` or ``proof``."""
    key: bytes
    """batch_id or proof_id."""
    vendor: bytes
    tx: bytes
    last_valid: int
    state: AttemptState
    announced: bool
    """Whether its SUBMITTED record was acknowledged by Kafka."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    signature TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    key BLOB NOT NULL,
    vendor BLOB NOT NULL,
    tx BLOB NOT NULL,
    last_valid INTEGER NOT NULL,
    state TEXT NOT NULL,
    announced INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_key ON attempts (kind, key, state);
"""


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # durable before we send
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record(
        self, *, signature: str, kind: str, key: bytes, vendor: bytes, tx: bytes, last_valid: int
    ) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO attempts (signature, kind, key, vendor, tx, last_valid, state,"
            " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (signature, kind, key, vendor, tx, last_valid, AttemptState.PENDING.value, _now()),
        )

    def announced(self, signature: str) -> None:
        self._db.execute("UPDATE attempts SET announced = 1 WHERE signature = ?", (signature,))

    def resolve(self, signature: str, state: AttemptState) -> None:
        self._db.execute(
            "UPDATE attempts SET state = ? WHERE signature = ?", (state.value, signature)
        )

    def pending(self, kind: str | None = None, key: bytes | None = None) -> list[Attempt]:
        query = "SELECT * FROM attempts WHERE state = ?"
        args: list[object] = [AttemptState.PENDING.value]
        if kind is not None:
            query += " AND kind = ?"
            args.append(kind)
        if key is not None:
            query += " AND key = ?"
            args.append(key)
        return [_attempt(r) for r in self._db.execute(query + " ORDER BY rowid", args)]

    def attempts(self, kind: str, key: bytes) -> list[Attempt]:
        rows = self._db.execute(
            "SELECT * FROM attempts WHERE kind = ? AND key = ? ORDER BY rowid", (kind, key)
        )
        return [_attempt(r) for r in rows]

    def prune(self, older_than_ms: int) -> int:
        """Forget resolved attempts created before ``older_than_ms`` (pending ones stay)."""
        cur = self._db.execute(
            "DELETE FROM attempts WHERE state != ? AND created_ms < ?",
            (AttemptState.PENDING.value, older_than_ms),
        )
        return int(cur.rowcount)

    def count(self, state: AttemptState | None = None) -> int:
        if state is None:
            (n,) = self._db.execute("SELECT COUNT(*) FROM attempts").fetchone()
        else:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM attempts WHERE state = ?", (state.value,)
            ).fetchone()
        return int(n)


def _attempt(row: tuple[object, ...]) -> Attempt:
    signature, kind, key, vendor, tx, last_valid, state, announced, _created = row
    assert isinstance(signature, str)
    assert isinstance(kind, str)
    assert isinstance(state, str)
    assert isinstance(key, bytes)
    assert isinstance(vendor, bytes)
    assert isinstance(tx, bytes)
    assert isinstance(last_valid, int)
    assert isinstance(announced, int)
    return Attempt(
        signature, kind, key, vendor, tx, last_valid, AttemptState(state), bool(announced)
    )


def _now() -> int:
    return int(time.time() * 1000)
