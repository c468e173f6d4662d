"""`machpay gateway`: help, and configuration errors that name the setting."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from machpay.cli import cli
from machpay.protocol import Keypair


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env or {}, catch_exceptions=False)
    return result.exit_code, result.output


def test_help_is_complete() -> None:
    code, output = run("gateway", "--help")
    assert code == 0
    for option in ("--config", "--host", "--port", "--log-level", "/metrics", "/readyz"):
        assert option in output


def test_missing_secret_is_named(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(f"[gateway]\nvendor_address = '{Keypair.generate().address}'\n")
    code, output = run("gateway", "--config", str(config), env={"MACHPAY_CONFIG": ""})
    assert code == 1
    assert "gateway.challenge_secret is required" in output
    assert "MACHPAY_GATEWAY__CHALLENGE_SECRET" in output


def test_missing_vendor_and_routes_are_named(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text("[gateway]\nport = 9\n")
    secret = {"MACHPAY_GATEWAY__CHALLENGE_SECRET": "ab" * 32}
    code, output = run("gateway", "--config", str(config), env=secret)
    assert code == 1
    assert "gateway.vendor_keypair or gateway.vendor_address" in output
    config.write_text(f"[gateway]\nvendor_address = '{Keypair.generate().address}'\n")
    code, output = run("gateway", "--config", str(config), env=secret)
    assert code == 1
    assert "no routes configured" in output


def test_bad_setting_in_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text("[gateway]\nexposure_share = 2\n")
    code, output = run("gateway", "--config", str(config))
    assert code == 1
    assert "gateway.exposure_share" in output
