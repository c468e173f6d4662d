"""Settings: file + environment, validated, with errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from machpay.config import ConfigError, load_settings


def test_defaults_validate_without_file_or_environment() -> None:
    settings = load_settings(environ={})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.deployment.domain == bytes.fromhex("6c6f63616c6e6574")


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "machpay.toml"
    cfg.write_text('[kafka]\nbootstrap_servers = "10.0.0.1:9092"\nclient_id = "from-file"\n')
    env = {"MACHPAY_KAFKA__CLIENT_ID": "from-env", "MACHPAY_LOCAL_KAFKA__PORT": "19092"}
    settings = load_settings(cfg, environ=env, overrides={"kafka": {"topic_prefix": "t."}})
    assert settings.kafka.bootstrap_servers == "10.0.0.1:9092"
    assert settings.kafka.client_id == "from-env"
    assert settings.kafka.topic_prefix == "t."
    assert settings.local_kafka.port == 19092


def test_config_path_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[deployment]\nnetwork = "solana:devnet"\n')
    assert load_settings(environ={"MACHPAY_CONFIG": str(cfg)}).deployment.network == "solana:devnet"


def test_bad_environment_value_names_variable_and_setting() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"MACHPAY_LOCAL_KAFKA__PORT": "not-a-port"})
    text = str(err.value)
    assert "local_kafka.port" in text
    assert "MACHPAY_LOCAL_KAFKA__PORT" in text


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "typo.toml"
    cfg.write_text("[kafka]\nbootstrap_server = 'x:1'\n")
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_server .*unknown setting"):
        load_settings(cfg, environ={})


def test_bootstrap_servers_need_ports(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_servers"):
        load_settings(environ={"MACHPAY_KAFKA__BOOTSTRAP_SERVERS": "localhost"})


def test_program_id_must_be_an_address() -> None:
    with pytest.raises(ConfigError, match=r"deployment\.machpay_program_id"):
        load_settings(environ={"MACHPAY_DEPLOYMENT__MACHPAY_PROGRAM_ID": "nope"})


def test_domain_tag_must_be_eight_bytes_hex() -> None:
    with pytest.raises(ConfigError, match=r"deployment\.domain_tag"):
        load_settings(environ={"MACHPAY_DEPLOYMENT__DOMAIN_TAG": "abc"})


def test_missing_or_invalid_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    with pytest.raises(ConfigError, match=r"bad\.toml is not valid TOML"):
        load_settings(bad, environ={})
