"""Background processes the local tooling starts and stops: the Kafka broker
(:mod:`machpay.kafka.broker`) and the Solana node (:mod:`machpay.localnet.node`).

Both outlive the command that started them (a pid file says where they are),
so liveness is judged from the pid, not from a handle, and a zombie counts as
gone. Children started by this very process are remembered so they can be
reaped instead of polled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def adopt(process: subprocess.Popen[bytes]) -> int:
    """Remember a child this process started, so stopping it also reaps it."""
    _CHILDREN[process.pid] = process
    return process.pid


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def cmdline(pid: int) -> str | None:
    """The process's command line, or None where /proc is not available."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None


def parent_death_signal() -> None:
    """In the forked child: ask Linux to SIGTERM it when the parent dies
    (test fixtures use it so a killed pytest leaves no daemon behind)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def wait_exit(pid: int, timeout: float, *, poll: float = 0.05) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit (reaping it if it is ours)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        _CHILDREN.pop(pid, None)
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not alive(pid):
            return True
        time.sleep(poll)
    return False


def terminate(pid: int, *, grace: float, kill_wait: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after ``grace`` seconds; True when it exited in time."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_exit(pid, grace):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_exit(pid, kill_wait)
    return False
