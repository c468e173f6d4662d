"""`machpay streams` is registered, and the [streams] settings validate at start."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from machpay.cli import cli
from machpay.config import ConfigError, load_settings


def test_streams_worker_command_is_registered() -> None:
    result = CliRunner().invoke(cli, ["streams", "worker", "--help"])
    assert result.exit_code == 0, result.output
    assert "intents.accepted" in result.output


def test_streams_settings_come_from_the_environment() -> None:
    settings = load_settings(
        environ={
            "MACHPAY_STREAMS__BATCH_MAX_INTENTS": "500",
            "MACHPAY_STREAMS__VERIFY_SIGNATURES": "false",
        }
    )
    assert settings.streams.batch_max_intents == 500
    assert settings.streams.verify_signatures is False
    assert settings.streams.group_id == "machpay-streams"


def test_bad_streams_setting_is_named() -> None:
    with pytest.raises(ConfigError, match=r"streams\.batch_max_intents"):
        load_settings(environ={"MACHPAY_STREAMS__BATCH_MAX_INTENTS": "0"})


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("CHUNK_MAX_INTENTS", "0", "chunk_max_intents"),
        ("COMMIT_INTERVAL_MS", "1", "commit_interval_ms"),
        ("STATE_REPLICATION_FACTOR", "0", "state_replication_factor"),
        ("STANDBY_REPLICAS", "-1", "standby_replicas"),
    ],
)
def test_bad_faust_settings_are_named(variable: str, value: str, setting: str) -> None:
    with pytest.raises(ConfigError, match=rf"streams\.{setting}"):
        load_settings(environ={f"MACHPAY_STREAMS__{variable}": value})


def test_worker_help_explains_every_option() -> None:
    result = CliRunner().invoke(cli, ["streams", "worker", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--worker-id", "--log-level"):
        assert option in result.output
    assert "SIGTERM" in result.output
