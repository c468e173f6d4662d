"""Per-call telemetry, pushed in batches from a background thread.

Each call the SDK makes becomes one :class:`CallRecord` (the JSON twin of the
Avro ``machpay.ClientLog``: keys as base58, the intent id as hex). A
:class:`TelemetryPusher` queues records in memory and a daemon thread POSTs
them to ``{ingest_url}/v1/logs`` as ``{"records": [...]}`` with
``Authorization: Bearer <api key>``.

The paid call must never wait for, or fail because of, telemetry:
``record()`` only appends to a bounded deque (when full the *oldest* record
is dropped and counted in ``dropped``); every network problem is swallowed
and counted in ``failed_batches``; a batch that fails is dropped, not retried
forever, so a dead ingest endpoint costs one timeout per flush interval.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)


def sdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("machpay-sdk")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


class Outcome(StrEnum):
    """How a call ended, from the SDK's point of view (``machpay.ClientLogOutcome``)."""

    PAID = "PAID"
    FREE = "FREE"
    REFUSED_BY_POLICY = "REFUSED_BY_POLICY"
    PAYMENT_REJECTED = "PAYMENT_REJECTED"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One API call as the agent saw it. Field names and meaning follow ``machpay.ClientLog``."""

    agent: str
    url: str
    method: str
    vendor: str | None
    status: int
    latency_ms: float
    amount: int
    intent_id: str | None
    outcome: Outcome
    error: str | None
    at_ms: int
    sdk_version: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return data


class TelemetrySink(Protocol):
    """Anything that accepts call records without blocking."""

    def record(self, record: CallRecord) -> None: ...


class TelemetryPusher:
    """Batches :class:`CallRecord` s to the ingest endpoint from a daemon thread."""

    def __init__(
        self,
        ingest_url: str,
        api_key: str | None = None,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_queue < 1 or batch_size < 1:
            raise ValueError("max_queue and batch_size must be positive")
        self.url = ingest_url.rstrip("/") + "/v1/logs"
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._queue: deque[CallRecord] = deque()
        self._max_queue = max_queue
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)
        self.sent = 0
        self.dropped = 0
        self.failed_batches = 0
        self._thread = threading.Thread(target=self._run, name="machpay-telemetry", daemon=True)
        self._thread.start()
        self._closed = False
        # A daemon thread dies with the interpreter: push what is queued at exit,
        # briefly (an exiting agent must not hang on a dead ingest endpoint).
        atexit.register(self.close, 1.0)

    def record(self, record: CallRecord) -> None:
        """Queue a record; O(1), never blocks on the network, never raises."""
        with self._lock:
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(record)
            full = len(self._queue) >= self.batch_size
        if full:
            self._wake.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight

    def flush(self, timeout: float = 10.0) -> bool:
        """Ask for an immediate push and wait until the queue is empty (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Push what is queued (up to ``timeout``), then stop the thread."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self.flush(timeout)
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        self._client.close()

    def __enter__(self) -> TelemetryPusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self) -> list[CallRecord]:
        with self._lock:
            count = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count
            return batch

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while batch := self._take():
                self._push(batch)
                with self._idle:
                    self._in_flight = 0
                    self._idle.notify_all()
                if self._stopping.is_set():
                    break
            with self._idle:
                self._idle.notify_all()

    def _push(self, batch: list[CallRecord]) -> None:
        try:
            response = self._client.post(
                self.url, json={"records": [record.to_json() for record in batch]}
            )
            if response.status_code >= 300:
                raise httpx.HTTPStatusError(
                    f"ingest answered {response.status_code}",
                    request=response.request,
                    response=response,
                )
            self.sent += len(batch)
        except Exception as exc:  # telemetry never fails the agent
            self.failed_batches += 1
            log.debug("telemetry batch of %d dropped: %s", len(batch), exc)
