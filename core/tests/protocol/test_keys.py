"""Agent keypairs and the Solana CLI keypair file format."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from solders.keypair import Keypair as SoldersKeypair

from machpay.protocol import (
    KeyFileError,
    Keypair,
    address_to_bytes,
    bytes_to_address,
    load_keypair,
    save_keypair,
    verify_strict,
)

SEED = hashlib.sha256(b"machpay-test-agent-0").digest()


def test_keypair_matches_solana_tooling() -> None:
    ours, theirs = Keypair.from_seed(SEED), SoldersKeypair.from_seed(SEED)
    assert ours.public == bytes(theirs.pubkey()), "public key differs from solders"
    assert ours.address == str(theirs.pubkey()), "base58 address differs from solders"
    assert ours.to_solana_bytes() == bytes(theirs), "64-byte keypair layout differs"
    assert ours.seed == SEED
    message = b"hello"
    assert ours.sign(message) == bytes(theirs.sign_message(message)), "signatures differ"


def test_generate_gives_distinct_working_keys() -> None:
    a, b = Keypair.generate(), Keypair.generate()
    assert a.public != b.public
    verify_strict(b"m", a.sign(b"m"), a.public)


def test_repr_never_shows_the_seed() -> None:
    keypair = Keypair.from_seed(SEED)
    assert SEED.hex() not in repr(keypair)
    assert keypair.address in repr(keypair)


def test_address_round_trip() -> None:
    keypair = Keypair.from_seed(SEED)
    assert address_to_bytes(keypair.address) == keypair.public
    assert bytes_to_address(keypair.public) == keypair.address
    with pytest.raises(ValueError, match="32 bytes"):
        bytes_to_address(b"short")
    with pytest.raises(ValueError, match="Base58"):
        address_to_bytes("not-base58-0OIl")


def test_bad_seed_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Keypair.from_seed(bytes(31))


def test_save_then_load(tmp_path: Path) -> None:
    keypair = Keypair.from_seed(SEED)
    path = save_keypair(keypair, tmp_path / "agent.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "key file must be owner-only"
    assert load_keypair(path) == keypair
    # Readable by Solana tooling: the same JSON array solders writes.
    assert json.loads(path.read_text()) == json.loads(SoldersKeypair.from_seed(SEED).to_json())
    assert [p.name for p in tmp_path.iterdir()] == ["agent.json"], "no temp files left behind"


def test_save_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    save_keypair(Keypair.from_seed(SEED), path)
    path.chmod(0o644)
    other = Keypair.from_seed(bytes(32))
    with pytest.raises(FileExistsError):
        save_keypair(other, path)
    assert load_keypair(path).public != other.public, "existing key must survive"
    save_keypair(other, path, overwrite=True)
    assert load_keypair(path) == other
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "overwrite must not keep loose perms"


def test_load_accepts_a_file_written_by_solders(tmp_path: Path) -> None:
    path = tmp_path / "id.json"
    path.write_text(SoldersKeypair.from_seed(SEED).to_json())
    assert load_keypair(path).seed == SEED


def _write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "k.json"
    path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{", "not JSON"),
        ("{}", "64 integers"),
        (json.dumps(list(range(63))), "64 integers"),
        (json.dumps([*range(63), 256]), "element 63"),
        (json.dumps([*range(63), -1]), "element 63"),
        (json.dumps([True] + [0] * 63), "element 0"),
        (json.dumps([1.0] + [0] * 63), "element 0"),
        (json.dumps(list(SEED) + [0] * 32), "does not match the seed"),
    ],
)
def test_load_rejects_malformed_files(tmp_path: Path, content: str, says: str) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(KeyFileError, match=says) as info:
        load_keypair(path)
    assert str(path) in str(info.value), "the error must name the file"


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_keypair(tmp_path / "missing.json")
