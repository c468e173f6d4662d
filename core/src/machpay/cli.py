"""The `machpay` command.

Subcommands come from the ``machpay.commands`` entry-point group: each
distribution (core, sdk, gateway, ...) registers its own, so `machpay --help`
lists exactly what is installed and an agent that installed only the SDK is
never asked to import Kafka or Faust. Commands load lazily on first use.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import click

from machpay.config import ConfigError, Settings, load_settings

COMMAND_GROUP = "machpay.commands"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP)}


class ComponentGroup(click.Group):
    """A click group whose commands are entry points of installed components."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_entry_points()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        builtin = super().get_command(ctx, cmd_name)
        if builtin is not None:
            return builtin
        ep = _entry_points().get(cmd_name)
        if ep is None:
            return None
        try:
            command = ep.load()
        except ImportError as exc:
            return _unavailable(cmd_name, ep, exc)
        if not isinstance(command, click.Command):
            raise click.ClickException(
                f"entry point {ep.value!r} for 'machpay {cmd_name}' is not a click command"
            )
        return command


def _unavailable(name: str, ep: EntryPoint, exc: ImportError) -> click.Command:
    """Stands in for a command whose component is installed but cannot import,
    so `machpay --help` still works and the error says what is missing."""
    message = f"'machpay {name}' cannot load ({ep.value}): {exc}"

    def fail() -> None:
        raise click.ClickException(message)

    return click.Command(name, callback=fail, help=f"(unavailable: {exc})")


class AppContext:
    """What every subcommand receives: the validated settings, loaded once."""

    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_path)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._settings


pass_app = click.make_pass_decorator(AppContext)


@click.group(cls=ComponentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MACHPAY_CONFIG",
    help="TOML settings file (also MACHPAY_CONFIG). Environment variables "
    "MACHPAY_<SECTION>__<FIELD> override it, e.g. MACHPAY_KAFKA__BOOTSTRAP_SERVERS.",
)
@click.version_option(package_name="machpay-core", prog_name="machpay")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """MachPay: per-call payments for AI agents, settled on Solana.

    Each subcommand belongs to one component; installing a component adds its
    command. Run `machpay COMMAND --help` for the options of each.
    """
    ctx.obj = AppContext(config_path)


@cli.command("config")
@pass_app
def show_config(app: AppContext) -> None:
    """Validate the settings and print them as the processes will see them."""
    import orjson

    click.echo(orjson.dumps(app.settings.model_dump(mode="json"), option=orjson.OPT_INDENT_2))


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="machpay")


if __name__ == "__main__":
    # Import the real module rather than run this copy: `python -m machpay.cli`
    # would otherwise define a second AppContext that subcommands do not know.
    from machpay.cli import main as _main

    _main()
