"""Run benchmarks: `python -m bench` runs all, `python -m bench protocol` one."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run MachPay benchmarks. Each prints its figures with a ratio against a "
        "baseline measured in the same run and writes bench/results/<name>.json; the README "
        "table is regenerated from those files.",
    )
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default all): {', '.join(available())}"
    )
    args = parser.parse_args()
    names = args.names or available()
    unknown = set(names) - set(available())
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; available: {available()}")
    for name in names:
        print(f"== bench {name}")
        importlib.import_module(f"bench.bench_{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
