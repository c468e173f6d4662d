"""Shared benchmark plumbing: timing, medians, ratios, result files, README table.

Every benchmark measures its figure *and* a baseline in the same process, and
reports the ratio: this machine is shared and has 2 cores, so an absolute
number alone says little. Results land in bench/results/<name>.json and the
README table between the BENCH markers is regenerated from all result files.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
README = Path(__file__).parent.parent / "README.md"
BEGIN, END = "<!-- BENCH:BEGIN -->", "<!-- BENCH:END -->"


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    target: str | None = None
    runs: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        assert self.baseline_value is not None
        return self.value / self.baseline_value


def rate(fn: Callable[[], int], *, repeat: int = 5, min_seconds: float = 0.2) -> list[float]:
    """Items per second of `fn` (which returns how many items it processed), per run."""
    rates = []
    for _ in range(repeat):
        items = 0
        start = time.perf_counter()
        while True:
            items += fn()
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(items / elapsed)
    return rates


def seconds(fn: Callable[[], object], *, repeat: int = 5) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def record(bench: str, figures: list[Figure], command: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{bench}.json"
    payload = {
        "bench": bench,
        "command": command,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "figures": [asdict(f) | {"ratio": f.ratio} for f in figures],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    for f in figures:
        ratio = f" ({f.ratio:.2f}x {f.baseline})" if f.ratio is not None else ""
        print(f"  {f.name}: {fmt(f.value)} {f.unit}{ratio}")
    update_readme()
    return path


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def table() -> str:
    rows = [
        "| bench | figure | median | baseline (same run) | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        for f in data["figures"]:
            base = (
                f"{f['baseline']}: {fmt(f['baseline_value'])}" if f.get("baseline_value") else "-"
            )
            ratio = f"{f['ratio']:.2f}" if f.get("ratio") is not None else "-"
            rows.append(
                f"| {data['bench']} | {f['name']} | {fmt(f['value'])} {f['unit']} | {base} "
                f"| {ratio} | {f.get('target') or '-'} |"
            )
    return "\n".join(rows)


def update_readme() -> None:
    if not README.exists():
        return
    text = README.read_text()
    if BEGIN not in text or END not in text:
        return
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{table()}\n{END}{tail}")


@contextlib.contextmanager
def local_kafka(work: Path, name: str) -> Iterator[Any]:
    """Settings for a broker with the topics created under a per-bench prefix.

    A fresh broker on free ports in ``work`` (or ``MACHPAY_BENCH_BOOTSTRAP``);
    None when Java or Maven is missing, so a bench can say what it skipped.
    """
    from machpay.config import LocalKafkaSettings, load_settings
    from machpay.kafka.admin import create_topics
    from machpay.kafka.broker import LocalBroker, ToolMissingError
    from machpay.testing import free_port

    external = os.environ.get("MACHPAY_BENCH_BOOTSTRAP")
    broker = None
    if external:
        bootstrap = external
    else:
        base = load_settings(environ={}).local_kafka
        port, controller = free_port(), free_port()
        local = LocalKafkaSettings.model_validate(
            {**base.model_dump(), "host": "127.0.0.1", "port": port, "controller_port": controller}
        )
        broker = LocalBroker(local, data_dir=work / "kafka")
        try:
            broker.fetch()
            broker.format()
            broker.start(die_with_parent=True)
        except ToolMissingError as exc:
            print(f"  no local Kafka ({exc}); the paid gateways will spool only")
            yield None
            return
        bootstrap = broker.bootstrap
    settings = load_settings(
        environ={},
        overrides={
            "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": f"bench{name}{os.getpid()}."}
        },
    )
    create_topics(settings, strict=False)
    try:
        yield settings
    finally:
        if broker is not None:
            broker.stop()


@contextlib.contextmanager
def local_solana(name: str) -> Iterator[str]:
    """RPC URL of a fresh ``machpay-localnet`` node (or ``MACHPAY_BENCH_RPC_URL``),
    built into ``MACHPAY_BENCH_CARGO_TARGET`` or the shared cargo target."""
    external = os.environ.get("MACHPAY_BENCH_RPC_URL")
    if external:
        yield external
        return
    import tempfile

    from machpay.localnet.node import LocalnetNode
    from machpay.testing import free_port

    target = os.environ.get("MACHPAY_BENCH_CARGO_TARGET")
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as home:
        node = LocalnetNode(
            port=free_port(), home=Path(home), target_dir=Path(target) if target else None
        )
        node.start(die_with_parent=True, timeout=60)
        try:
            yield node.url
        finally:
            node.stop()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes used so far (Linux /proc); gone ones count 0."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_loadgen(module: str, args: list[str], *, timeout: float) -> dict[str, Any]:
    """Run ``python -m module ARGS`` (a bench's own load generator) in its own
    process, so it never shares the measured process's interpreter, and return
    the JSON it prints."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        check=True,
        capture_output=True,
        timeout=timeout,
        cwd=Path(__file__).parent.parent,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result
