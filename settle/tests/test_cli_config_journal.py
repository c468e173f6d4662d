"""`machpay settle` is registered, [settle] settings validate, the journal is durable state."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from machpay.cli import cli
from machpay.config import ConfigError, load_settings
from machpay.settle.follower import Checkpoint
from machpay.settle.journal import AttemptState, Journal


@pytest.mark.parametrize("command", ["run", "follow", "status", "init"])
def test_commands_are_registered_with_help(command: str) -> None:
    result = CliRunner().invoke(cli, ["settle", command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--rpc-url" in result.output


def test_settle_settings_come_from_the_environment() -> None:
    settings = load_settings(
        environ={
            "MACHPAY_SETTLE__RPC_URL": "http://127.0.0.1:18899",
            "MACHPAY_SETTLE__COMMITMENT": "finalized",
            "MACHPAY_SETTLE__MAX_CHANNELS_PER_TX": "3",
            "MACHPAY_SETTLE__SLASH_GRACE_SECONDS": "0",
        }
    )
    assert settings.settle.slash_grace_seconds == 0.0
    assert load_settings(environ={}).settle.slash_grace_seconds == 5.0
    assert settings.settle.rpc_url == "http://127.0.0.1:18899"
    assert settings.settle.commitment == "finalized"
    assert settings.settle.max_channels_per_tx == 3


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("MACHPAY_SETTLE__RPC_URL", "localhost:8899", r"settle\.rpc_url"),
        ("MACHPAY_SETTLE__COMMITMENT", "max", r"settle\.commitment"),
        (
            "MACHPAY_SETTLE__GLOBAL_BOND_PROGRAM_ID",
            "not-base58!",
            r"settle\.global_bond_program_id",
        ),
        ("MACHPAY_SETTLE__LOOKUP_TABLE", "0OIl", r"settle\.lookup_table"),
        ("MACHPAY_SETTLE__MAX_ATTEMPTS", "0", r"settle\.max_attempts"),
        ("MACHPAY_SETTLE__SLASH_GRACE_SECONDS", "-1", r"settle\.slash_grace_seconds"),
        ("MACHPAY_SETTLE__SLASH_GRACE_SECONDS", "soon", r"settle\.slash_grace_seconds"),
    ],
)
def test_bad_settle_setting_is_named(variable: str, value: str, setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        load_settings(environ={variable: value})


def test_run_without_a_payer_names_the_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["settle", "run", "--state-dir", str(tmp_path)], env={"MACHPAY_CONFIG": ""}
    )
    assert result.exit_code != 0
    assert "settle.payer_keypair" in result.output


def test_journal_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    journal.record(
        signature="sig1", kind="settle", key=b"b" * 32, vendor=b"v" * 32, tx=b"tx", last_valid=9
    )
    journal.record(
        signature="sig2", kind="settle", key=b"b" * 32, vendor=b"v" * 32, tx=b"tx2", last_valid=9
    )
    journal.announced("sig1")
    journal.resolve("sig2", AttemptState.CONFIRMED)
    journal.close()
    again = Journal(path)
    (pending,) = again.pending("settle", b"b" * 32)
    assert (pending.signature, pending.tx, pending.last_valid, pending.announced) == (
        "sig1",
        b"tx",
        9,
        True,
    )
    assert [a.state for a in again.attempts("settle", b"b" * 32)] == [
        AttemptState.PENDING,
        AttemptState.CONFIRMED,
    ]
    assert again.count(AttemptState.CONFIRMED) == 1
    assert again.pending("proof") == []
    # Pruning forgets resolved attempts only; the pending one stays whatever its age.
    assert again.prune(older_than_ms=2**62) == 1
    assert [a.signature for a in again.attempts("settle", b"b" * 32)] == ["sig1"]


def test_checkpoint_round_trips_and_bad_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "follower.json"
    cp = Checkpoint.load(path)
    assert cp.newest == {}
    cp.newest["prog"] = "sig"
    cp.save()
    assert Checkpoint.load(path).newest == {"prog": "sig"}
    path.write_text("{")
    with pytest.raises(ValueError, match=r"follower\.json"):
        Checkpoint.load(path)


def test_run_without_kafka_names_the_setting(tmp_path: Path) -> None:
    from machpay.protocol import Keypair, save_keypair
    from machpay.testing import free_port

    save_keypair(Keypair.generate(), tmp_path / "payer.json")
    nobody = f"127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        cli,
        ["settle", "run", "--payer", str(tmp_path / "payer.json"), "--state-dir", str(tmp_path)],
        env={"MACHPAY_CONFIG": "", "MACHPAY_KAFKA__BOOTSTRAP_SERVERS": nobody},
    )
    assert result.exit_code != 0
    assert f"setting kafka.bootstrap_servers {nobody}" in result.output
