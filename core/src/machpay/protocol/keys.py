"""Ed25519 keypairs for agents, in the Solana CLI keypair file format.

An agent key is a Solana address, so agents and operators can manage it with
the usual Solana tools: the file is a JSON array of 64 integers, the 32-byte
seed followed by the 32-byte public key.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import nacl.bindings as sodium
from solders.pubkey import Pubkey

SEED_LEN = 32
PUBLIC_KEY_LEN = 32


class KeyFileError(ValueError):
    """A keypair file is missing, malformed or inconsistent; the message says which."""


def address_to_bytes(address: str) -> bytes:
    """Decode a base58 Solana address to its 32 bytes (``ValueError`` if invalid)."""
    return bytes(Pubkey.from_string(address))


def bytes_to_address(key: bytes) -> str:
    """Encode 32 bytes as a base58 Solana address."""
    if len(key) != PUBLIC_KEY_LEN:
        raise ValueError(f"an address is {PUBLIC_KEY_LEN} bytes, got {len(key)}")
    return str(Pubkey.from_bytes(key))


class Keypair:
    """An Ed25519 signing key. ``repr`` never shows the seed."""

    __slots__ = ("_public", "_secret")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LEN:
            raise ValueError(f"an Ed25519 seed is {SEED_LEN} bytes, got {len(seed)}")
        public, secret = sodium.crypto_sign_seed_keypair(bytes(seed))
        self._public: bytes = bytes(public)
        # libsodium's 64-byte secret key is seed || public key: the same bytes
        # as the Solana CLI file, and what crypto_sign wants.
        self._secret: bytes = bytes(secret)

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        return cls(seed)

    @classmethod
    def generate(cls) -> Keypair:
        return cls(os.urandom(SEED_LEN))

    @classmethod
    def from_solana_bytes(cls, data: bytes) -> Keypair:
        """From the 64 bytes of a Solana keypair (seed then public key), checked."""
        if len(data) != SEED_LEN + PUBLIC_KEY_LEN:
            raise ValueError(f"a Solana keypair is 64 bytes, got {len(data)}")
        keypair = cls(data[:SEED_LEN])
        if keypair.public != data[SEED_LEN:]:
            raise ValueError("the public key half does not match the seed")
        return keypair

    @property
    def seed(self) -> bytes:
        return self._secret[:SEED_LEN]

    @property
    def public(self) -> bytes:
        """The 32-byte Ed25519 public key (the agent's Solana address bytes)."""
        return self._public

    @property
    def address(self) -> str:
        """The base58 Solana address of the public key."""
        return bytes_to_address(self._public)

    def to_solana_bytes(self) -> bytes:
        """Seed then public key: the 64 bytes of a Solana CLI keypair file."""
        return self._secret

    def sign(self, message: bytes) -> bytes:
        """Pure Ed25519 (RFC 8032) signature over ``message``: 64 bytes."""
        return bytes(sodium.crypto_sign(message, self._secret)[:64])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keypair) and other._secret == self._secret

    def __hash__(self) -> int:
        return hash(self._public)

    def __repr__(self) -> str:
        return f"Keypair(address={self.address})"


def load_keypair(path: str | os.PathLike[str]) -> Keypair:
    """Read a Solana CLI keypair file, checking that the public half matches the seed."""
    where = Path(path)
    try:
        raw = where.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"{where}: cannot read keypair file: {exc.strerror}") from exc
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"{where}: not JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(values, list) or len(values) != SEED_LEN + PUBLIC_KEY_LEN:
        raise KeyFileError(f"{where}: expected a JSON array of 64 integers")
    for i, value in enumerate(values):
        # bool is an int subclass in Python; true/false in the file is a mistake.
        if type(value) is not int or not 0 <= value <= 255:
            raise KeyFileError(f"{where}: element {i} is {value!r}, expected an integer 0..255")
    try:
        return Keypair.from_solana_bytes(bytes(values))
    except ValueError as exc:
        raise KeyFileError(f"{where}: {exc}") from exc


def save_keypair(
    keypair: Keypair, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write a Solana CLI keypair file readable by its owner only (mode 0600).

    The file is written to a temporary sibling and renamed into place, so a
    crash never leaves a half-written key. An existing file is kept unless
    ``overwrite`` is set: losing an agent key loses the bond behind it.
    """
    where = Path(path)
    if where.exists() and not overwrite:
        raise FileExistsError(f"{where}: keypair file exists; pass overwrite=True to replace it")
    text = json.dumps(list(keypair.to_solana_bytes()), separators=(",", ":"))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{where.name}.", dir=where.parent or ".")
    try:
        os.fchmod(fd, 0o600)  # mkstemp already uses 0600; be explicit, umask-proof
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, where)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return where
