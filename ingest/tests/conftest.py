"""Fixtures of the receiver's tests: a key file with one key per case."""

from __future__ import annotations

from pathlib import Path

import pytest

from machpay.ingest.testing import World, write_keys
from machpay.protocol import Keypair


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path / "keys.json", Keypair.generate(), Keypair.generate(), Keypair.generate())
    write_keys(w.keys_file, w.key_entries())
    return w
