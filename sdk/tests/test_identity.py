"""Agent identity: Solana CLI keypair files, default location, address."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from machpay.protocol import KeyFileError, Keypair, load_keypair
from machpay.sdk.identity import AgentWallet, default_key_path


def test_create_writes_a_solana_cli_keypair_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "agent.json"
    wallet = AgentWallet.create(path)
    values = json.loads(path.read_text())
    assert len(values) == 64
    assert all(type(v) is int and 0 <= v <= 255 for v in values)
    assert bytes(values[32:]) == wallet.public
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keypair(path) == wallet.keypair


def test_load_returns_the_same_address(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    created = AgentWallet.create(path)
    loaded = AgentWallet.load(path)
    assert loaded.address == created.address
    assert loaded.path == path


def test_create_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    AgentWallet.create(path)
    with pytest.raises(FileExistsError):
        AgentWallet.create(path)
    AgentWallet.create(path, overwrite=True)


def test_missing_key_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"missing\.json"):
        AgentWallet.load(tmp_path / "missing.json")


def test_default_location_is_under_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MACHPAY_AGENT_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_key_path() == tmp_path / "machpay" / "agent.json"
    wallet = AgentWallet.load_or_create()
    assert (tmp_path / "machpay" / "agent.json").exists()
    assert AgentWallet.load_or_create().address == wallet.address
    monkeypatch.setenv("MACHPAY_AGENT_KEY", str(tmp_path / "other.json"))
    assert default_key_path() == tmp_path / "other.json"


def test_save_copies_a_key(tmp_path: Path) -> None:
    wallet = AgentWallet(Keypair.from_seed(bytes(range(32))))
    wallet.save(tmp_path / "copy.json")
    assert AgentWallet.load(tmp_path / "copy.json").address == wallet.address
    assert "seed" not in repr(wallet)
