"""Allocator throughput: durable allocations/s, 1 process and N processes sharing one key.

Run from the repository root::

    python sdk/bench/allocator.py [--seconds 3] [--processes 4] [--runs 3]

Every allocation is one ``BEGIN IMMEDIATE`` transaction committed with
``synchronous=FULL`` (an fsync of the WAL), so the figure is bounded by the
disk's fsync rate. The baseline, measured in the same run on the same disk,
is that floor itself: a bare SQLite transaction updating one counter with
the same journal settings. Medians of ``--runs`` runs; prints JSON and
writes ``sdk/bench/results/allocator.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    figures: dict[str, float] = {}
    for procs in (1, args.processes):
        # Baseline and allocator alternate within each run, so load on this
        # shared machine hits both alike; the ratio is the median of per-run ratios.
        base, alloc = [], []
        for _ in range(args.runs):
            base.append(_run("baseline", procs, args.seconds))
            alloc.append(_run("allocator", procs, args.seconds))
        figures[f"baseline_{procs}p_per_s"] = round(statistics.median(base), 1)
        figures[f"allocator_{procs}p_per_s"] = round(statistics.median(alloc), 1)
        figures[f"ratio_{procs}p"] = round(
            statistics.median(a / b for a, b in zip(alloc, base, strict=True)), 3
        )
    # Threads of one process share a ledger: their allocations are group-committed.
    base, alloc = [], []
    for _ in range(args.runs):
        base.append(_run("baseline", 1, args.seconds))
        alloc.append(_run("allocator", 1, args.seconds, threads=args.threads))
    figures[f"allocator_1p_{args.threads}t_per_s"] = round(statistics.median(alloc), 1)
    figures[f"ratio_1p_{args.threads}t"] = round(
        statistics.median(a / b for a, b in zip(alloc, base, strict=True)), 3
    )
    result = {"name": "allocator", "seconds": args.seconds, "runs": args.runs, **figures}
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / "allocator.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
