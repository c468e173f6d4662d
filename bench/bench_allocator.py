"""Allocator throughput: durable allocations/s, 1 process and N processes sharing one key.

Run with ``python -m bench allocator`` (3 runs of 3 s per figure).

Every allocation is one ``BEGIN IMMEDIATE`` transaction committed with
``synchronous=FULL`` (an fsync of the WAL), so the figure is bounded by the
disk's fsync rate. The baseline, measured in the same run on the same disk,
is that floor itself: a bare SQLite transaction updating one counter with
the same journal settings. Baseline and allocator alternate within each run
so load on this shared machine hits both alike; the ratio is the median of
per-run ratios.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from bench.harness import Figure, median, record
from machpay.sdk.ledger import AgentLedger

DOMAIN = b"benchdom"
CHANNELS = [bytes([i]) * 32 for i in range(1, 9)]
FORK = multiprocessing.get_context("fork")


def _allocate_for(
    path: str,
    seconds: float,
    start: float,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
    threads: int = 1,
) -> None:
    ledger = AgentLedger(path, agent="bench")
    counts = [0] * threads

    def loop(index: int) -> None:
        while time.time() < start:
            time.sleep(0.001)
        count, deadline = 0, start + seconds
        while time.time() < deadline:
            ledger.allocate(
                domain=DOMAIN,
                channel=CHANNELS[(index + count) % 8],
                vendor="v",
                service="s",
                amount=1,
            )
            count += 1
        counts[index] = count

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ledger.close()
    out.put(sum(counts))


def _baseline_for(path: str, seconds: float, start: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    conn = sqlite3.connect(path, isolation_level=None, timeout=60)
    conn.execute("PRAGMA busy_timeout = 60000")
    conn.execute("PRAGMA synchronous = FULL")
    while time.time() < start:
        time.sleep(0.001)
    count, deadline = 0, start + seconds
    while time.time() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE counter SET value = value + 1")
        conn.execute("COMMIT")
        count += 1
    conn.close()
    out.put(count)


def _run(kind: str, processes: int, seconds: float, threads: int = 1) -> float:
    with tempfile.TemporaryDirectory(dir=Path.home()) as tmp:
        path = str(Path(tmp) / "bench.sqlite3")
        if kind == "baseline":
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("CREATE TABLE counter (value INTEGER)")
            conn.execute("INSERT INTO counter VALUES (0)")
            conn.close()
            target = _baseline_for
        else:
            AgentLedger(path, agent="bench").close()
            target = _allocate_for
        queue = FORK.Queue()
        start = time.time() + 0.3
        procs = [
            FORK.Process(target=target, args=(path, seconds, start, queue))
            for _ in range(processes)
        ]
        for p in procs:
            p.start()
        total: int = sum(int(queue.get(timeout=seconds + 60)) for _ in procs)
        for p in procs:
            p.join()
        return total / seconds


SECONDS = 3.0
RUNS = 3
PROCESSES = 4
THREADS = 8


def _figure(name: str, procs: int, threads: int = 1) -> Figure:
    base, alloc = [], []
    for _ in range(RUNS):
        base.append(_run("baseline", procs, SECONDS))
        alloc.append(_run("allocator", procs, SECONDS, threads=threads))
    figure = Figure(
        name, median(alloc), "/s", "bare fsync'd SQLite transaction", median(base), runs=alloc
    )
    # A ratio of medians can mislead when load swings between runs.
    figure.baseline_value = figure.value / median([a / b for a, b in zip(alloc, base, strict=True)])
    return figure


def main() -> None:
    record(
        "allocator",
        [
            _figure("durable allocations/s, 1 process", 1),
            _figure(f"durable allocations/s, {PROCESSES} processes, one key", PROCESSES),
            _figure(f"durable allocations/s, 1 process, {THREADS} threads", 1, THREADS),
        ],
        command="python -m bench allocator",
    )
