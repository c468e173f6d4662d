"""The agent's identity: one Ed25519 key, kept in a Solana CLI keypair file.

The file format and its checks are :mod:`machpay.protocol.keys`; this module
only decides where the key lives by default and how an agent gets one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from machpay.protocol import Keypair, load_keypair, save_keypair

KEY_PATH_ENV = "MACHPAY_AGENT_KEY"
"""Environment variable naming the agent keypair file (overrides the default)."""


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/machpay`` or ``~/.config/machpay``."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "machpay"


def default_key_path() -> Path:
    """Where the agent key lives unless told otherwise: ``MACHPAY_AGENT_KEY`` or
    ``~/.config/machpay/agent.json``."""
    explicit = os.environ.get(KEY_PATH_ENV)
    return Path(explicit) if explicit else config_dir() / "agent.json"


POLICY_PATH_ENV = "MACHPAY_AGENT_POLICY"
"""Environment variable naming the owner's spend policy file."""


def default_policy_path() -> Path:
    """The owner's spend policy file: ``MACHPAY_AGENT_POLICY`` or
    ``~/.config/machpay/policy.toml`` (read when present)."""
    explicit = os.environ.get(POLICY_PATH_ENV)
    return Path(explicit) if explicit else config_dir() / "policy.toml"


def default_state_dir() -> Path:
    """Where per-agent allocation state lives: ``~/.config/machpay/state``.

    It sits next to the key on purpose: the state is as precious as the key
    (losing it risks signing a lower cumulative), so it must not live in a cache
    directory that anyone may wipe.
    """
    return config_dir() / "state"


@dataclass(frozen=True, slots=True)
class AgentWallet:
    """An agent key and the file it came from."""

    keypair: Keypair
    path: Path | None = None

    @property
    def address(self) -> str:
        """The agent's base58 Solana address."""
        return self.keypair.address

    @property
    def public(self) -> bytes:
        return self.keypair.public

    @classmethod
    def create(
        cls, path: str | os.PathLike[str] | None = None, *, overwrite: bool = False
    ) -> AgentWallet:
        """Generate a new key and save it (mode 0600); refuses to replace a key unless asked."""
        where = Path(path) if path is not None else default_key_path()
        where.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        keypair = Keypair.generate()
        save_keypair(keypair, where, overwrite=overwrite)
        return cls(keypair, where)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> AgentWallet:
        """Load a key file (``KeyFileError`` naming the file when it is missing or bad)."""
        where = Path(path) if path is not None else default_key_path()
        return cls(load_keypair(where), where)

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str] | None = None) -> AgentWallet:
        where = Path(path) if path is not None else default_key_path()
        if where.exists():
            return cls.load(where)
        return cls.create(where)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write this key to another file (Solana CLI format, mode 0600)."""
        where = Path(path)
        where.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return save_keypair(self.keypair, where, overwrite=overwrite)

    def __repr__(self) -> str:
        return f"AgentWallet(address={self.address}, path={self.path})"
