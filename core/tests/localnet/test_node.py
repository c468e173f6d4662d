"""The localnet launcher (machpay.localnet.node) and `machpay localnet`, against
the real machpay-localnet binary built with cargo."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from machpay.cli import cli
from machpay.localnet.node import (
    LocalnetError,
    LocalnetNode,
    PortInUseError,
    ToolMissingError,
    rpc_call,
)
from machpay.testing import free_port


def _target() -> Path | None:
    target = os.environ.get("MACHPAY_TEST_CARGO_TARGET")
    return Path(target) if target else None


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LocalnetNode]:
    n = LocalnetNode(port=free_port(), home=tmp_path / "home", target_dir=_target())
    yield n
    n.stop()


@pytest.mark.integration
def test_up_status_down_round_trip(node: LocalnetNode) -> None:
    pid = node.start(timeout=60)
    assert node.running_pid() == pid
    st = node.status()
    assert st.running
    assert st.pid == pid
    assert st.slot == 0, "a fresh chain: nothing landed yet"
    assert rpc_call(node.url, "getHealth") == "ok"
    rpc_call(node.url, "requestAirdrop", ["11111111111111111111111111111112", 1_000_000_000])
    assert node.status().slot == 1, "the airdrop landed in its own slot"
    assert node.start() == pid, "a second start finds the running node"
    assert node.stop() is True
    assert node.running_pid() is None
    assert not node.state_file.exists()
    assert node.stop() is False


@pytest.mark.integration
def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        n = LocalnetNode(port=port, home=tmp_path, target_dir=_target())
        with pytest.raises(PortInUseError, match=f"port {port} .* in use"):
            n.start(timeout=60)
    assert n.running_pid() is None


def test_missing_cargo_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="cargo is not installed"):
        LocalnetNode(home=tmp_path).build()


def test_a_missing_workspace_is_named(tmp_path: Path) -> None:
    with pytest.raises(ToolMissingError, match="MACHPAY_PROGRAMS_DIR"):
        LocalnetNode(home=tmp_path, workspace=tmp_path / "nowhere").build()


def test_an_invalid_port_is_refused() -> None:
    with pytest.raises(LocalnetError, match="port must be"):
        LocalnetNode(port=70000)


def test_status_of_a_stopped_node_exits_3(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["localnet", "status", "--home", str(tmp_path)])
    assert result.exit_code == 3, result.output
    assert "localnet: stopped" in result.output


def test_every_command_explains_its_options() -> None:
    runner = CliRunner()
    for command in (["up"], ["down"], ["status"]):
        result = runner.invoke(cli, ["localnet", *command, "--help"])
        assert result.exit_code == 0, result.output
    up = runner.invoke(cli, ["localnet", "up", "--help"]).output
    for option in (
        "--port",
        "--host",
        "--home",
        "--target-dir",
        "--workspace",
        "--no-build",
        "--timeout",
    ):
        assert option in up


@pytest.mark.integration
def test_cli_up_and_down(tmp_path: Path) -> None:
    runner = CliRunner()
    port = free_port()
    args = ["--home", str(tmp_path)]
    target = _target()
    build = ["--target-dir", str(target)] if target else []
    up = runner.invoke(cli, ["localnet", "up", "--port", str(port), *args, *build])
    try:
        assert up.exit_code == 0, up.output
        assert f"http://127.0.0.1:{port}" in up.output
        status = runner.invoke(cli, ["localnet", "status", "--json", *args])
        assert status.exit_code == 0, status.output
        assert '"running": true' in status.output
    finally:
        down = runner.invoke(cli, ["localnet", "down", *args])
    assert down.exit_code == 0, down.output
    assert "stopped" in down.output


@pytest.mark.integration
def test_build_shows_cargo_progress_and_finds_the_binary(tmp_path: Path) -> None:
    lines: list[str] = []
    n = LocalnetNode(home=tmp_path, target_dir=_target(), echo=lines.append)
    binary = n.build()
    assert binary.is_file()
    assert any(line.startswith("  cargo: Finished") for line in lines), lines
    assert lines[-1].startswith(f"  built {binary}")
