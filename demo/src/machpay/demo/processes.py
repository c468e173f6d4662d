"""Run MachPay services as child processes, each with its own log file.

The demo starts every service the way an operator would (`machpay gateway`,
`machpay streams worker`, `machpay settle run`), so what it shows is the
product and not an in-process shortcut. A service is ready when its probe
says so; a service that exits early fails the start with the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


class ServiceError(RuntimeError):
    """A service did not start, or stopped on its own."""


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Service:
    """One `machpay …` child process."""

    name: str
    args: Sequence[str]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    ready: Callable[[], bool] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        env = {**os.environ, **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "machpay.cli", *self.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        out.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServiceError(
                    f"{self.name} exited with {self.process.returncode if self.process else '?'}"
                    f"; last lines of {self.log}:\n{log_tail(self.log)}"
                )
            if self.ready is None or self._probe():
                return
            time.sleep(0.1)
        raise ServiceError(
            f"{self.name} not ready after {timeout_s:.0f}s; last lines of {self.log}:\n"
            f"{log_tail(self.log)}"
        )

    def _probe(self) -> bool:
        assert self.ready is not None
        try:
            return self.ready()
        except Exception:
            return False

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (a graceful stop: workers commit and write their markers), then SIGKILL."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        return self.process.returncode


class ServiceGroup:
    """Services started in order and stopped in reverse, whatever happens."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.services: list[Service] = []
        self.echo = echo

    def start(self, service: Service, *, timeout_s: float = 60.0) -> Service:
        t0 = time.monotonic()
        service.start()
        self.services.append(service)
        service.wait_ready(timeout_s)
        self.echo(
            f"  {service.name:<22} up (pid {service.process.pid if service.process else '?'}) "
            f"in {time.monotonic() - t0:.1f}s, log {service.log}"
        )
        return service

    def check(self) -> None:
        """Raise if any service died; the demo must not report on a broken stack."""
        for service in self.services:
            if not service.alive():
                raise ServiceError(
                    f"{service.name} stopped unexpectedly; last lines of {service.log}:\n"
                    f"{log_tail(service.log)}"
                )

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()

    def __enter__(self) -> ServiceGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


@contextlib.contextmanager
def services(echo: Callable[[str], None]) -> Iterator[ServiceGroup]:
    with ServiceGroup(echo) as group:
        yield group
