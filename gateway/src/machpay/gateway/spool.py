"""The local durable spool: every accepted intent is on disk before its response.

Files ``<seq>.spool`` in ``spool_dir`` hold records appended in acceptance
order; a record is ``u32le length || u32le crc32(payload) || payload`` (the
payload is :func:`encode_accepted`). Appends are one ``write`` each; the
response waits for a *group commit*: one ``fdatasync`` covers every record
written before it started, so under load many responses share one sync and
a ``kill -9`` (or a power cut, with ``spool_fsync``) loses nothing that was
answered.

Once Kafka acknowledged everything up to a position, :meth:`Spool.ack`
records it in ``ack`` (a hint, rewritten atomically, not synced: losing it
only means re-producing a few intents, which downstream dedupes by id) and
deletes segments that are wholly acknowledged. On start, :meth:`Spool.open`
returns everything after the ack position, in order, truncating a torn last
record (a crash in the middle of a write) so the file stays appendable.

The spool is bounded: :meth:`Spool.has_room` is False once the unacknowledged
bytes reach ``max_bytes`` and the gateway refuses paid calls (``spool_full``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from machpay.protocol import SignedIntent
from machpay.protocol.intent import SIGNED_INTENT_LEN
from machpay.wire.intents import AcceptedIntent

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
_FIXED = struct.Struct("<32sQB")
_SOURCES = ("GATEWAY", "INGEST")
SEGMENT_BYTES = 4 << 20
ACK_WRITE_SECONDS = 0.25
#: Loop iterations a group commit waits before syncing: long enough for the
#: request that wrote the record to have sent its upstream call (so the sync
#: overlaps the upstream's work) and for concurrent requests to join the group.
FLUSH_YIELDS = 8
SUFFIX = ".spool"


def encode_accepted(intent: AcceptedIntent) -> bytes:
    service = intent.service.encode("utf-8")
    route = intent.route.encode("utf-8")
    return b"".join(
        (
            intent.signed.to_bytes(),
            _FIXED.pack(intent.vendor, intent.accepted_at_ms, _SOURCES.index(intent.source)),
            struct.pack("<H", len(service)),
            service,
            struct.pack("<H", len(route)),
            route,
        )
    )


def decode_accepted(payload: bytes) -> AcceptedIntent:
    signed = SignedIntent.from_bytes(payload[:SIGNED_INTENT_LEN])
    at = SIGNED_INTENT_LEN
    vendor, accepted_at_ms, source = _FIXED.unpack_from(payload, at)
    at += _FIXED.size
    (length,) = struct.unpack_from("<H", payload, at)
    service = payload[at + 2 : at + 2 + length].decode("utf-8")
    at += 2 + length
    (length,) = struct.unpack_from("<H", payload, at)
    route = payload[at + 2 : at + 2 + length].decode("utf-8")
    return AcceptedIntent(
        signed=signed,
        vendor=vendor,
        service=service,
        route=route,
        accepted_at_ms=accepted_at_ms,
        source=_SOURCES[source],  # type: ignore[arg-type]
    )


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """The end of a record: segment number and byte offset just after it."""

    segment: int
    offset: int


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        fsync: bool = True,
        commit_interval_ms: float = 0.0,
        segment_bytes: int = SEGMENT_BYTES,
        retain_seconds: float = 0.0,
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.commit_interval = commit_interval_ms / 1000
        self.segment_bytes = segment_bytes
        self.retain_seconds = retain_seconds
        self._sizes: dict[int, int] = {}  # live segment -> bytes written
        self._acked = Position(0, 0)
        self._fd: int | None = None
        self._seq = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._unsynced: list[int] = []  # fds written since the last sync (rotated ones too)
        self._closing: list[int] = []  # rotated segments, closed once synced
        self._ack_written = 0.0
        self._flusher: asyncio.Task[None] | None = None
        self.syncs = 0

    # -- start -------------------------------------------------------------------

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob(f"*{SUFFIX}") if p.stem.isdigit())

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:012d}{SUFFIX}"

    def _read_ack(self) -> Position:
        try:
            seq, offset = (self.directory / "ack").read_text().split()
            return Position(int(seq), int(offset))
        except (OSError, ValueError):
            return Position(0, 0)

    def open(self) -> list[tuple[AcceptedIntent, Position, bool]]:
        """Recover every record still on disk, in order, with whether Kafka already
        acknowledged it (retained ones rebuild the replay and channel ledgers);
        then open a new segment for appends."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._acked = self._read_ack()
        pending: list[tuple[AcceptedIntent, Position, bool]] = []
        segments = self._segments()
        for seq in segments:
            path = self._path(seq)
            data = path.read_bytes()
            offset = 0
            while offset < len(data):
                if offset + _HEADER.size > len(data):
                    break
                length, crc = _HEADER.unpack_from(data, offset)
                end = offset + _HEADER.size + length
                payload = data[offset + _HEADER.size : end]
                if end > len(data) or zlib.crc32(payload) != crc:
                    break
                position = Position(seq, end)
                try:
                    pending.append((decode_accepted(payload), position, position <= self._acked))
                except (ValueError, IndexError, struct.error) as exc:
                    log.error("spool %s: undecodable record at %d: %s", path, offset, exc)
                offset = end
            if offset < len(data):
                log.warning(
                    "spool %s: torn or corrupt record at byte %d of %d (a crash mid-write); "
                    "truncating",
                    path,
                    offset,
                    len(data),
                )
                with open(path, "r+b") as fh:
                    fh.truncate(offset)
                    os.fsync(fh.fileno())
            self._sizes[seq] = offset
        self._seq = (segments[-1] + 1) if segments else 1
        self._open_segment()
        self._collect()
        return pending

    def _open_segment(self) -> None:
        self._fd = os.open(self._path(self._seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._sizes[self._seq] = 0
        if self.fsync:  # make the new file's directory entry durable
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    # -- accounting --------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes on disk not yet acknowledged by Kafka."""
        total = 0
        for seq, size in self._sizes.items():
            if seq > self._acked.segment:
                total += size
            elif seq == self._acked.segment:
                total += max(0, size - self._acked.offset)
        return total

    def has_room(self) -> bool:
        return self.pending_bytes < self.max_bytes

    # -- append and group commit --------------------------------------------------

    def append(self, intent: AcceptedIntent) -> tuple[Position, asyncio.Future[None] | None]:
        """Write one record; returns its position and a future resolved once it is
        synced (None when ``fsync`` is off: the write is already in the OS)."""
        if self._fd is None:
            raise RuntimeError("spool is not open")
        record = frame(encode_accepted(intent))
        if self._sizes[self._seq] + len(record) > self.segment_bytes and self._sizes[self._seq]:
            self._rotate()
        assert self._fd is not None
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(f"short write to the spool ({written} of {len(record)} bytes)")
        except OSError:
            # Never leave half a record in the middle of a segment.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._sizes[self._seq])
            raise
        self._sizes[self._seq] += len(record)
        position = Position(self._seq, self._sizes[self._seq])
        if not self.fsync:
            return position, None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if not self._unsynced or self._unsynced[-1] != self._fd:
            self._unsynced.append(self._fd)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return position, waiter

    def _rotate(self) -> None:
        old = self._fd
        self._seq += 1
        self._open_segment()
        if old is None:
            return
        if self.fsync:
            self._closing.append(old)  # closed by the flusher once its last write is synced
        else:
            os.close(old)

    async def _flush(self) -> None:
        """Group commit. The sync runs on the event loop thread: measured here, handing
        it to a worker thread cost more loop time (wake-up and GIL hand-over) than the
        ~0.2 ms ``fdatasync`` itself. Yielding first lets the request that triggered
        the flush send its upstream call, so the sync overlaps the upstream's work."""
        while self._waiters:
            if self.commit_interval:
                await asyncio.sleep(self.commit_interval)
            else:
                for _ in range(FLUSH_YIELDS):
                    await asyncio.sleep(0)
            waiters, self._waiters = self._waiters, []
            fds, self._unsynced = self._unsynced, []
            try:
                _sync_all(fds)
            except OSError as exc:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            self.syncs += 1
            for fd in list(self._closing):
                if fd not in self._unsynced:
                    self._closing.remove(fd)
                    os.close(fd)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- acknowledgement ----------------------------------------------------------

    def ack(self, position: Position) -> None:
        """Kafka has everything up to ``position``: remember it, drop finished segments.

        The ``ack`` file is rewritten at most every ``ACK_WRITE_SECONDS`` (and on
        close): it only saves re-producing a few intents after a crash."""
        if position <= self._acked:
            return
        self._acked = position
        now = time.monotonic()
        if now - self._ack_written >= ACK_WRITE_SECONDS:
            self._write_ack()
            self._ack_written = now
        self._collect()

    def _write_ack(self) -> None:
        tmp = self.directory / "ack.tmp"
        tmp.write_text(f"{self._acked.segment} {self._acked.offset}\n")
        os.replace(tmp, self.directory / "ack")

    def _collect(self) -> None:
        """Delete closed segments Kafka has wholly acknowledged, once older than
        ``retain_seconds`` (kept that long so a restart still knows recent ids)."""
        horizon = time.time() - self.retain_seconds
        for seq in list(self._sizes):
            finished = seq < self._acked.segment or (
                seq == self._acked.segment and self._sizes[seq] <= self._acked.offset
            )
            if not finished or seq == self._seq:
                continue
            path = self._path(seq)
            try:
                if self.retain_seconds and path.stat().st_mtime > horizon:
                    continue
                path.unlink()
            except FileNotFoundError:
                pass
            del self._sizes[seq]

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        if self._acked > Position(0, 0):
            self._write_ack()
        if self._fd is not None:
            if self.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        for fd in self._closing:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._closing.clear()


def _sync_all(fds: list[int]) -> None:
    for fd in fds:
        os.fdatasync(fd)
