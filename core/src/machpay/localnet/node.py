"""A local Solana JSON-RPC node: the ``machpay-localnet`` binary (LiteSVM running
the MachPay programs natively, see programs/localnet) built with cargo and run
in the background, like :mod:`machpay.kafka.broker` runs Kafka.

Files, under ``<home>`` (default ``$MACHPAY_CACHE/localnet``)::

    <home>/localnet.json   pid, host, port and binary of the running node
    <home>/localnet.log    the node's stdout and stderr

The binary goes to ``$MACHPAY_CACHE/cargo-target/debug/machpay-localnet``;
cargo rebuilds it when a source changed and does nothing otherwise. Chain
state lives in the node's memory only: ``down`` then ``up`` starts a fresh
chain. Only the standard library is used (no solana-py), so the SDK and core
never depend on an RPC stack for this.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machpay import daemons
from machpay.config import default_cache_dir

__all__ = [
    "BINARY_NAME",
    "LocalnetError",
    "LocalnetNode",
    "LocalnetStatus",
    "PortInUseError",
    "ToolMissingError",
    "default_workspace",
    "rpc_call",
]

Echo = Callable[[str], None]

BINARY_NAME = "machpay-localnet"
CRATE_NAME = "machpay-localnet"
STATE_FILE = "localnet.json"
LOG_FILE = "localnet.log"
DEFAULT_PORT = 8899
WORKSPACE_ENV = "MACHPAY_PROGRAMS_DIR"
"""Where the programs/ Cargo workspace is, when not beside this checkout's core/."""


class LocalnetError(Exception):
    """The localnet could not be built, started or stopped; the message says why."""


class ToolMissingError(LocalnetError):
    """cargo is not installed, or the programs workspace is not where expected."""


class PortInUseError(LocalnetError):
    """The port the node should listen on is taken."""


def default_workspace() -> Path:
    """The programs/ Cargo workspace of this checkout (core is installed editable)."""
    explicit = os.environ.get(WORKSPACE_ENV)
    if explicit:
        return Path(explicit)
    # core/src/machpay/localnet/node.py -> the repository root is 4 levels up.
    return Path(__file__).resolve().parents[4] / "programs"


def rpc_call(url: str, method: str, params: list[Any] | None = None, timeout: float = 5.0) -> Any:
    """One JSON-RPC call with the standard library; returns ``result`` or raises LocalnetError."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise LocalnetError(f"{method}: {reply['error'].get('message')}")
    return reply["result"]


@dataclass(frozen=True, slots=True)
class LocalnetStatus:
    running: bool
    pid: int | None
    url: str
    slot: int | None
    home: Path
    log_file: Path
    binary: Path


class LocalnetNode:
    """Build, start, query and stop one local node.

    ``home`` holds the state and log files; ``target_dir`` is cargo's target
    directory (default ``$MACHPAY_CACHE/cargo-target``); ``workspace`` the
    programs/ Cargo workspace.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        home: Path | None = None,
        target_dir: Path | None = None,
        workspace: Path | None = None,
        echo: Echo | None = None,
    ) -> None:
        if not 0 < port < 65536:
            raise LocalnetError(f"port must be 1..65535, got {port}")
        self.host = host
        self.port = port
        self.home = home or default_cache_dir() / "localnet"
        self.target_dir = target_dir or default_cache_dir() / "cargo-target"
        self.workspace = workspace or default_workspace()
        self.echo: Echo = echo or (lambda _line: None)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.home / STATE_FILE

    @property
    def log_file(self) -> Path:
        return self.home / LOG_FILE

    @property
    def binary(self) -> Path:
        return self.target_dir / "debug" / BINARY_NAME

    # -- build -------------------------------------------------------------

    def build(self) -> Path:
        """Run ``cargo build`` for the node (a no-op when up to date); cargo's
        progress lines go to ``echo``. Returns the binary's path."""
        cargo = shutil.which("cargo")
        if cargo is None:
            raise ToolMissingError(
                "cargo is not installed (the localnet is built from programs/localnet): "
                "install Rust with rustup, then retry"
            )
        manifest = self.workspace / "Cargo.toml"
        if not manifest.is_file():
            raise ToolMissingError(
                f"no Cargo workspace at {manifest}; set {WORKSPACE_ENV} to the programs/ "
                "directory of a MachPay checkout"
            )
        command = [
            cargo,
            "build",
            "--manifest-path",
            str(manifest),
            "-p",
            CRATE_NAME,
            "--bin",
            BINARY_NAME,
        ]
        env = {**os.environ, "CARGO_TARGET_DIR": str(self.target_dir), "CARGO_TERM_COLOR": "never"}
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        assert proc.stderr is not None
        tail: list[str] = []
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            tail = [*tail[-30:], line]
            if line.strip().startswith(("Compiling", "Finished", "error", "warning: unused")):
                self.echo(f"  cargo: {line.strip()}")
        if proc.wait() != 0:
            raise LocalnetError(
                f"cargo build of {CRATE_NAME} failed (exit {proc.returncode}):\n" + "\n".join(tail)
            )
        if not self.binary.is_file():
            raise LocalnetError(f"cargo finished but {self.binary} does not exist")
        self.echo(f"  built {self.binary} ({time.monotonic() - started:.1f}s)")
        return self.binary

    # -- run ---------------------------------------------------------------

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return state

    def running_pid(self) -> int | None:
        """The pid of this home's node when it runs (stale state files are removed)."""
        state = self._read_state()
        if state is None:
            return None
        pid = int(state.get("pid", 0))
        if pid > 0 and daemons.alive(pid):
            cmd = daemons.cmdline(pid)
            if cmd is None or BINARY_NAME in cmd:
                return pid
        self.state_file.unlink(missing_ok=True)
        return None

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            return bool(rpc_call(self.url, "getHealth", timeout=timeout) == "ok")
        except (OSError, LocalnetError, ValueError):
            return False

    def start(
        self, *, timeout: float = 30.0, build: bool = True, die_with_parent: bool = False
    ) -> int:
        """Build when needed, start the node detached, wait for getHealth; returns the pid.

        When this home's node already runs, says so and returns its pid (the
        port of the running node wins; see ``status``).
        """
        pid = self.running_pid()
        if pid is not None:
            state = self._read_state() or {}
            self.port = int(state.get("port", self.port))
            self.host = str(state.get("host", self.host))
            self.echo(f"localnet already running (pid {pid}) on {self.url}")
            return pid
        if build:
            self.build()
        elif not self.binary.is_file():
            raise LocalnetError(f"{self.binary} is missing; start with building enabled")
        if not daemons.port_free(self.host, self.port):
            raise PortInUseError(
                f"port {self.port} on {self.host} is in use (another validator or localnet?); "
                "pick another with --port"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [str(self.binary), "--bind", self.host, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=daemons.parent_death_signal if die_with_parent else None,  # noqa: PLW1509
            )
        daemons.adopt(proc)
        state = {"pid": proc.pid, "host": self.host, "port": self.port, "binary": str(self.binary)}
        self.state_file.write_text(json.dumps(state) + "\n")
        deadline = started + timeout
        while time.monotonic() < deadline:
            if not daemons.alive(proc.pid):
                self.state_file.unlink(missing_ok=True)
                raise LocalnetError(
                    f"the localnet (pid {proc.pid}) exited during start-up; see {self.log_file}:\n"
                    + self._log_tail()
                )
            if self.healthy(timeout=0.5):
                self.echo(
                    f"localnet up (pid {proc.pid}) on {self.url} in "
                    f"{time.monotonic() - started:.1f}s"
                )
                return proc.pid
            time.sleep(0.05)
        self._kill(proc.pid, grace=2.0)
        self.state_file.unlink(missing_ok=True)
        raise LocalnetError(
            f"the localnet did not answer getHealth on {self.url} within {timeout:.0f}s"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _kill(self, pid: int, *, grace: float) -> bool:
        return daemons.terminate(pid, grace=grace, kill_wait=5.0)

    def stop(self, *, timeout: float = 10.0) -> bool:
        """SIGTERM the node, SIGKILL after ``timeout``; False when it was not running."""
        pid = self.running_pid()
        if pid is None:
            return False
        self._kill(pid, grace=timeout)
        self.state_file.unlink(missing_ok=True)
        self.echo(f"localnet stopped (pid {pid})")
        return True

    def status(self) -> LocalnetStatus:
        pid = self.running_pid()
        if pid is not None:
            state = self._read_state() or {}
            self.port = int(state.get("port", self.port))
            self.host = str(state.get("host", self.host))
        binary = self.binary
        slot: int | None = None
        if pid is not None:
            binary = Path((self._read_state() or {}).get("binary", binary))
            with contextlib.suppress(OSError, LocalnetError, ValueError):
                slot = int(rpc_call(self.url, "getSlot", timeout=1.0))
        return LocalnetStatus(
            running=pid is not None,
            pid=pid,
            url=self.url,
            slot=slot,
            home=self.home,
            log_file=self.log_file,
            binary=binary,
        )
