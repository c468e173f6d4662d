"""The agent's local ledger: durable nonces, channel cumulatives, spending, receipts.

One SQLite file per agent key (``<state_dir>/<address>.sqlite3``), opened in
WAL mode with ``synchronous=FULL``. Every allocation is one ``BEGIN
IMMEDIATE`` transaction that, under SQLite's write lock:

1. checks the spend policy's budgets against what is already recorded,
2. takes the next nonce and advances the counter,
3. raises the channel's cumulative by the call's amount,
4. records the spend,

and commits (an fsync) *before* the caller signs anything. Hence:

- a thread, a second process with the same key, or a restart never reuses a
  nonce: the counter on disk is past every nonce ever handed out;
- a channel's (nonce, cumulative) sequence never forks: nonces and
  cumulatives of one channel grow together, in one serial order, so for
  ``nonce_a < nonce_b`` always ``cumulative_b >= cumulative_a + amount_b``;
- a crash (even SIGKILL mid-transaction) can only lose an allocation that
  was never returned, i.e. never signed: nonces may be skipped, never reused.

There are no in-memory nonce blocks: the cumulative has to reach the disk
before the signature leaves anyway, so the nonce rides in the same commit for
free. What is batched is the commit: concurrent allocations of one process
share one transaction (group commit, a savepoint each), so threads pay one
fsync per batch, not per allocation. A fresh ledger starts its nonce counter at the current time in
microseconds, so a ledger recreated after a loss (same key, empty state)
starts above every nonce the old one can have handed out at under a million
allocations a second. The channel cumulatives cannot be recovered that way:
the state file is as precious as the key.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from machpay.sdk.errors import LedgerError, PolicyViolation
from machpay.sdk.policy import SpendPolicy

SCHEMA_VERSION = 1
I64_MAX = 2**63 - 1  # SQLite integers are signed 64-bit; ample for lamports.
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS channels (
    domain     BLOB NOT NULL,
    channel    BLOB NOT NULL,
    vendor     TEXT NOT NULL,
    cumulative INTEGER NOT NULL CHECK (cumulative >= 0),
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (domain, channel)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spends (
    nonce      INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    vendor     TEXT NOT NULL,
    service    TEXT NOT NULL,
    domain     BLOB NOT NULL,
    channel    BLOB NOT NULL,
    amount     INTEGER NOT NULL,
    cumulative INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spends_at ON spends (at_ms);
CREATE TABLE IF NOT EXISTS vendor_totals (
    vendor TEXT PRIMARY KEY,
    total  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (
    intent_id  BLOB PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    method     TEXT NOT NULL,
    url        TEXT NOT NULL,
    vendor     TEXT NOT NULL,
    service    TEXT NOT NULL,
    network    TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    cumulative INTEGER NOT NULL,
    nonce      INTEGER NOT NULL,
    status     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_at ON receipts (at_ms);
"""


@dataclass(frozen=True, slots=True)
class Allocation:
    """A nonce and cumulative reserved, durably, for one payment on one channel."""

    nonce: int
    cumulative: int
    amount: int
    domain: bytes
    channel: bytes
    vendor: str
    service: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    """A paid call as kept for ``history``."""

    intent_id: bytes
    at_ms: int
    method: str
    url: str
    vendor: str
    service: str
    network: str
    amount: int
    cumulative: int
    nonce: int
    status: int


@dataclass(slots=True)
class _Pending:
    """One allocation waiting for the next group commit."""

    domain: bytes
    channel: bytes
    vendor: str
    service: str
    amount: int
    policy: SpendPolicy | None
    at_ms: int
    result: Allocation | None = None
    error: Exception | None = None
    done: bool = False


_LEDGERS: weakref.WeakSet[AgentLedger] = weakref.WeakSet()


def _reset_ledgers_in_child() -> None:
    for ledger in list(_LEDGERS):
        ledger._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_ledgers_in_child)


def ledger_path(address: str, state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / f"{address}.sqlite3"


class AgentLedger:
    """Durable allocation state for one agent key. Safe across threads and processes.

    Open it once per process (or per thread; it is also fine to share one
    instance between threads). ``agent`` is recorded on first use and checked
    afterwards, so a ledger is never reused for another key by mistake.
    """

    def __init__(self, path: str | os.PathLike[str], *, agent: str | None = None) -> None:
        self.path = Path(path)
        self.agent = agent
        self._lock = threading.Lock()
        self._queue = threading.Condition(threading.Lock())
        self._pending: list[_Pending] = []
        self._committing = False
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Owner-only, whatever the umask: SQLite gives its -wal/-shm files the
        # database file's mode.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        with self._lock:
            self._connect()
        _LEDGERS.add(self)

    def _after_fork_in_child(self) -> None:
        # Locks held by parent threads at fork time stay held forever in the
        # child, and the parent's queue and connection are not the child's:
        # start afresh (without closing the parent's connection).
        self._lock = threading.Lock()
        self._queue = threading.Condition(threading.Lock())
        self._pending = []
        self._committing = False
        self._conn = None

    @classmethod
    def for_agent(cls, address: str, state_dir: str | os.PathLike[str]) -> AgentLedger:
        return cls(ledger_path(address, state_dir), agent=address)

    # -- connection -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # A connection must not cross fork(): reopen in a child process.
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = self._enable_wal(conn)
        if mode != "wal":
            raise LedgerError(f"{self.path}: cannot enable WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        self._init_schema(conn)
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> str:
        # Switching the journal mode needs an exclusive lock and SQLite does not
        # call the busy handler for it: when several processes create the file at
        # once, retry until one has switched it (WAL mode is persistent).
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                if mode == "wal":
                    return mode
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise LedgerError(f"{self.path}: cannot open: {exc}") from exc
                time.sleep(0.005)

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                conn.execute("INSERT INTO meta VALUES ('next_nonce', ?)", (time.time_ns() // 1000,))
            elif row[0] != SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}"
                )
            if self.agent is not None:
                self._check_agent(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _check_agent(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS agent (address TEXT NOT NULL)")
        row = conn.execute("SELECT address FROM agent").fetchone()
        if row is None:
            conn.execute("INSERT INTO agent VALUES (?)", (self.agent,))
        elif row[0] != self.agent:
            raise LedgerError(f"{self.path}: belongs to agent {row[0]}, not {self.agent}")

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Cursor]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken up front, so two
        writers never both read a value and then both write it. Reads use a
        deferred transaction (a consistent WAL snapshot, no write lock)."""
        with self._lock:
            cur = self._connect().cursor()
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> AgentLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- allocation -----------------------------------------------------------

    def allocate(
        self,
        *,
        domain: bytes,
        channel: bytes,
        vendor: str,
        service: str,
        amount: int,
        policy: SpendPolicy | None = None,
        now_ms: int | None = None,
    ) -> Allocation:
        """Reserve the next nonce and raise the channel's cumulative by ``amount``.

        Committed to disk before returning. Raises
        :class:`~machpay.sdk.errors.PolicyViolation` (nothing recorded) when the
        policy forbids it.
        """
        if type(amount) is not int or amount < 1:
            raise ValueError(f"amount must be a positive integer, got {amount!r}")
        if policy is not None:
            policy.check_offer(vendor=vendor, service=service, amount=amount)
        at_ms = int(time.time() * 1000) if now_ms is None else now_ms
        request = _Pending(domain, channel, vendor, service, amount, policy, at_ms)
        # Group commit: one thread at a time commits every allocation queued so
        # far in one transaction (one fsync); the others wait on a condition and
        # leave as soon as theirs is done. Each allocation is still on disk
        # before its caller gets it back.
        with self._queue:
            self._pending.append(request)
            while not request.done and self._committing:
                self._queue.wait()
            if request.done:
                batch = None
            else:  # nobody is committing, so this request is still queued
                batch, self._pending = self._pending, []
                self._committing = True
        if batch is not None:
            try:
                with self._lock:
                    self._commit(batch)
            finally:
                with self._queue:
                    self._committing = False
                    self._queue.notify_all()
        if request.error is not None:
            raise request.error
        if request.result is None:  # pragma: no cover - a batch always settles each item
            raise LedgerError("allocation was not settled")
        return request.result

    def _commit(self, batch: list[_Pending]) -> None:
        """Allocate a batch in one ``BEGIN IMMEDIATE`` transaction (caller holds the lock).

        Each allocation runs in its own savepoint, so one refused by the policy
        leaves the others intact; if the transaction itself fails, none of them
        is returned (an unreturned allocation is at worst a skipped nonce).
        """
        try:
            cur = self._connect().cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for item in batch:
                    cur.execute("SAVEPOINT allocation")
                    try:
                        item.result = self._allocate_in(cur, item)
                    except (PolicyViolation, LedgerError) as exc:
                        cur.execute("ROLLBACK TO allocation")
                        item.error = exc
                    cur.execute("RELEASE allocation")
                cur.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                raise
        except BaseException as exc:
            for item in batch:
                item.result = None
                item.error = (
                    exc
                    if isinstance(exc, Exception)
                    else LedgerError(f"allocation batch interrupted: {exc!r}")
                )
            raise
        finally:
            for item in batch:
                item.done = True

    @staticmethod
    def _allocate_in(cur: sqlite3.Cursor, item: _Pending) -> Allocation:
        policy = item.policy
        if policy is not None and policy.needs_budget:
            row = cur.execute(
                "SELECT total FROM vendor_totals WHERE vendor = ?", (item.vendor,)
            ).fetchone()
            spent_vendor = row[0] if row else 0
            spent_window = 0
            if policy.window_limit is not None:
                since = item.at_ms - int(policy.window_seconds * 1000)
                spent_window = cur.execute(
                    "SELECT COALESCE(SUM(amount), 0) FROM spends WHERE at_ms > ?", (since,)
                ).fetchone()[0]
            policy.check_budget(
                vendor=item.vendor,
                service=item.service,
                amount=item.amount,
                spent_with_vendor=spent_vendor,
                spent_in_window=spent_window,
            )
        row = cur.execute(
            "SELECT cumulative FROM channels WHERE domain = ? AND channel = ?",
            (item.domain, item.channel),
        ).fetchone()
        cumulative = (row[0] if row else 0) + item.amount
        if cumulative > I64_MAX:
            raise LedgerError(f"channel cumulative would overflow ({cumulative})")
        nonce = cur.execute("SELECT value FROM meta WHERE name = 'next_nonce'").fetchone()[0]
        cur.execute("UPDATE meta SET value = ? WHERE name = 'next_nonce'", (nonce + 1,))
        cur.execute(
            "INSERT INTO channels (domain, channel, vendor, cumulative, updated_ms) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (domain, channel) DO UPDATE SET "
            "cumulative = excluded.cumulative, updated_ms = excluded.updated_ms",
            (item.domain, item.channel, item.vendor, cumulative, item.at_ms),
        )
        cur.execute(
            "INSERT INTO spends VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                nonce,
                item.at_ms,
                item.vendor,
                item.service,
                item.domain,
                item.channel,
                item.amount,
                cumulative,
            ),
        )
        cur.execute(
            "INSERT INTO vendor_totals VALUES (?, ?) ON CONFLICT (vendor) DO UPDATE "
            "SET total = total + excluded.total",
            (item.vendor, item.amount),
        )
        return Allocation(
            nonce,
            cumulative,
            item.amount,
            item.domain,
            item.channel,
            item.vendor,
            item.service,
            item.at_ms,
        )

    def resync(self, *, domain: bytes, channel: bytes, vendor: str, hint: int) -> int:
        """Raise the channel's cumulative to ``max(local, hint)``; never lower it.

        Returns the cumulative now recorded. Used on the gateway's corrective
        402 (``cumulative_out_of_step``): the next allocation on the channel
        then authorises ``hint + amount`` or more.
        """
        if type(hint) is not int or not 0 <= hint <= I64_MAX:
            raise ValueError(f"cumulative hint must be an integer in 0..2^63-1, got {hint!r}")
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO channels (domain, channel, vendor, cumulative, updated_ms) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (domain, channel) DO UPDATE SET "
                "cumulative = MAX(cumulative, excluded.cumulative), "
                "updated_ms = excluded.updated_ms",
                (domain, channel, vendor, hint, int(time.time() * 1000)),
            )
            row = cur.execute(
                "SELECT cumulative FROM channels WHERE domain = ? AND channel = ?",
                (domain, channel),
            ).fetchone()
        return int(row[0])

    # -- reading --------------------------------------------------------------

    def cumulative(self, *, domain: bytes, channel: bytes) -> int:
        """The last cumulative authorised on a channel (0 if none)."""
        with self._transaction(write=False) as cur:
            row = cur.execute(
                "SELECT cumulative FROM channels WHERE domain = ? AND channel = ?",
                (domain, channel),
            ).fetchone()
        return int(row[0]) if row else 0

    def next_nonce(self) -> int:
        """The nonce the next allocation will get (for inspection only)."""
        with self._transaction(write=False) as cur:
            return int(
                cur.execute("SELECT value FROM meta WHERE name = 'next_nonce'").fetchone()[0]
            )

    def spent(self, *, vendor: str | None = None, since_ms: int | None = None) -> int:
        """Lamports authorised in total, to one vendor, and/or since a time."""
        clauses: list[str] = []
        params: list[object] = []
        if vendor is not None:
            clauses.append("vendor = ?")
            params.append(vendor)
        if since_ms is not None:
            clauses.append("at_ms > ?")
            params.append(since_ms)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._transaction(write=False) as cur:
            row = cur.execute(
                f"SELECT COALESCE(SUM(amount), 0) FROM spends{where}", params
            ).fetchone()
        return int(row[0])

    def allocations(self) -> list[Allocation]:
        """Every allocation ever made, in nonce order (tests and audits)."""
        with self._transaction(write=False) as cur:
            rows = cur.execute(
                "SELECT nonce, cumulative, amount, domain, channel, vendor, service, at_ms "
                "FROM spends ORDER BY nonce"
            ).fetchall()
        return [Allocation(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]

    # -- receipts -------------------------------------------------------------

    def record_receipt(self, receipt: ReceiptRecord) -> None:
        with self._transaction() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    receipt.intent_id,
                    receipt.at_ms,
                    receipt.method,
                    receipt.url,
                    receipt.vendor,
                    receipt.service,
                    receipt.network,
                    receipt.amount,
                    receipt.cumulative,
                    receipt.nonce,
                    receipt.status,
                ),
            )

    def history(self, limit: int = 50) -> list[ReceiptRecord]:
        """The most recent receipts, newest first."""
        with self._transaction(write=False) as cur:
            rows = cur.execute(
                "SELECT intent_id, at_ms, method, url, vendor, service, network, amount, "
                "cumulative, nonce, status FROM receipts ORDER BY at_ms DESC, nonce DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [ReceiptRecord(*row) for row in rows]
