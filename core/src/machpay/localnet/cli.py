"""`machpay localnet`: run a local Solana JSON-RPC node with the MachPay programs."""

from __future__ import annotations

from pathlib import Path

import click

from machpay.localnet.node import DEFAULT_PORT, LocalnetError, LocalnetNode

_HOME_HELP = (
    "Directory of the state file (pid, port) and the node's log. "
    "Default: $MACHPAY_CACHE/localnet (~/.cache/machpay/localnet)."
)
_TARGET_HELP = "Cargo target directory for the build. Default: $MACHPAY_CACHE/cargo-target."
_WORKSPACE_HELP = (
    "The programs/ Cargo workspace to build from (also MACHPAY_PROGRAMS_DIR). "
    "Default: programs/ of this checkout."
)


def _node(
    *,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    home: Path | None,
    target_dir: Path | None = None,
    workspace: Path | None = None,
) -> LocalnetNode:
    try:
        return LocalnetNode(
            host=host,
            port=port,
            home=home,
            target_dir=target_dir,
            workspace=workspace,
            echo=click.echo,
        )
    except LocalnetError as exc:
        raise click.UsageError(str(exc)) from exc


@click.group("localnet")
def localnet() -> None:
    """Run a local Solana JSON-RPC node with the MachPay programs loaded.

    The node is LiteSVM (a real Solana runtime: System program, address lookup
    tables, Ed25519 precompile) with GlobalBond, MachPay and ServiceRegistry
    compiled natively and loaded as builtins at their program ids. It is built
    from programs/localnet with cargo on first use. State is in memory: every
    `up` after a `down` starts a fresh chain.
    """


@localnet.command("up")
@click.option(
    "--port",
    type=int,
    default=DEFAULT_PORT,
    show_default=True,
    help="TCP port of the JSON-RPC endpoint.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind (keep it local: the faucet is open).",
)
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), help=_HOME_HELP)
@click.option("--target-dir", type=click.Path(file_okay=False, path_type=Path), help=_TARGET_HELP)
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path), help=_WORKSPACE_HELP)
@click.option("--no-build", is_flag=True, help="Do not run cargo; start the binary already built.")
@click.option(
    "--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for getHealth."
)
def up(
    *,
    port: int,
    host: str,
    home: Path | None,
    target_dir: Path | None,
    workspace: Path | None,
    no_build: bool,
    timeout: float,
) -> None:
    """Build (when sources changed) and start the node in the background.

    Idempotent: when the node of this home already runs it says so. Stop it
    with `machpay localnet down`.
    """
    node = _node(port=port, host=host, home=home, target_dir=target_dir, workspace=workspace)
    try:
        node.start(timeout=timeout, build=not no_build)
    except LocalnetError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"  rpc   {node.url}")
    click.echo(f"  log   {node.log_file}")


@localnet.command("down")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), help=_HOME_HELP)
@click.option(
    "--timeout", type=float, default=10.0, show_default=True, help="Seconds before SIGKILL."
)
def down(*, home: Path | None, timeout: float) -> None:
    """Stop the node of this home (its chain state is discarded)."""
    node = _node(home=home)
    if not node.stop(timeout=timeout):
        click.echo(f"localnet is not running (home {node.home})")


@localnet.command("status")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), help=_HOME_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(*, home: Path | None, as_json: bool) -> None:
    """Whether the node runs, where, and its current slot. Exits 3 when stopped."""
    st = _node(home=home).status()
    if as_json:
        import orjson

        data = {
            "running": st.running,
            "pid": st.pid,
            "url": st.url,
            "slot": st.slot,
            "home": str(st.home),
            "log_file": str(st.log_file),
            "binary": str(st.binary),
        }
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    else:
        state = f"running (pid {st.pid})" if st.running else "stopped"
        click.echo(f"localnet: {state}")
        click.echo(f"  rpc     {st.url}")
        if st.slot is not None:
            click.echo(f"  slot    {st.slot}")
        click.echo(f"  home    {st.home}")
        click.echo(f"  log     {st.log_file}")
        click.echo(f"  binary  {st.binary}")
    if not st.running:
        raise SystemExit(3)
