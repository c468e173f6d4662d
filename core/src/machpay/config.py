"""Typed settings for every MachPay process: one TOML file plus environment overrides.

Precedence, highest first: explicit overrides passed by code (CLI flags),
environment variables (``MACHPAY_<SECTION>__<FIELD>``), the TOML file named by
``--config`` or ``MACHPAY_CONFIG``, then the defaults below. Settings are
validated once at start; a bad value fails with a :class:`ConfigError` whose
message names the setting and where it came from.

Components add their own section models here as they are built, so that one
file configures a whole deployment and unknown keys (typos) are refused.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "MACHPAY_"
ENV_NESTED_DELIMITER = "__"
CONFIG_ENV = "MACHPAY_CONFIG"


def default_cache_dir() -> Path:
    """Where expensive downloads and builds live, outside any clone."""
    explicit = os.environ.get("MACHPAY_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "machpay"


class ConfigError(Exception):
    """A setting is missing, malformed or out of range; the message names it."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(Section):
    """How clients reach the Kafka cluster."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers."
    )
    client_id: str = Field("machpay", description="Client id prefix reported to the brokers.")
    topic_prefix: str = Field(
        "", description="Prepended to every topic name (isolates deployments sharing a cluster)."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    session_timeout_ms: int = Field(
        10_000, ge=1_000, description="Consumer group session timeout; short in tests."
    )
    heartbeat_interval_ms: int = Field(
        3_000, ge=100, description="Consumer heartbeat interval; must be below the session timeout."
    )
    request_timeout_ms: int = Field(30_000, ge=1_000)

    @field_validator("bootstrap_servers")
    @classmethod
    def _hosts_have_ports(cls, value: str) -> str:
        for host in value.split(","):
            name, sep, port = host.strip().rpartition(":")
            if not sep or not name or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {host.strip()!r}")
        return value


class SchemaRegistrySettings(Section):
    """Where Avro schema ids come from."""

    url: str | None = Field(
        None,
        description="Confluent-compatible schema registry URL; unset means the offline "
        "file-based registry shipped with the schemas.",
    )
    registry_file: Path | None = Field(
        None, description="Offline registry file (subject -> id); defaults to the packaged one."
    )


class LocalKafkaSettings(Section):
    """The single-node broker that `machpay kafka up` runs on this machine."""

    version: str = Field("4.1.1", description="Apache Kafka version fetched from Maven.")
    home: Path = Field(
        default_factory=lambda: default_cache_dir() / "kafka",
        description="Where jars, KRaft storage and logs live.",
    )
    host: str = Field("127.0.0.1", description="Interface the broker binds.")
    port: int = Field(9092, ge=1, le=65535, description="PLAINTEXT listener port.")
    controller_port: int = Field(9093, ge=1, le=65535, description="KRaft controller port.")
    heap: str = Field("512m", pattern=r"^\d+[mMgG]$", description="JVM heap (-Xmx).")
    partitions: int = Field(6, ge=1, description="Default partitions per created topic.")


class DeploymentSettings(Section):
    """Which on-chain deployment payments are bound to (see docs/protocol.md)."""

    network: str = Field(
        "solana:localnet", description="CAIP-2 id of the Solana cluster, e.g. solana:devnet."
    )
    machpay_program_id: str = Field(
        "MachPay111111111111111111111111111111111111",
        description="Base58 id of the MachPay program.",
    )
    domain_tag: str = Field(
        "6c6f63616c6e6574",
        pattern=r"^[0-9a-f]{16}$",
        description="8-byte deployment tag (16 hex chars) signed into every intent.",
    )

    @field_validator("machpay_program_id")
    @classmethod
    def _is_pubkey(cls, value: str) -> str:
        from solders.pubkey import Pubkey

        try:
            Pubkey.from_string(value)
        except ValueError as exc:
            raise ValueError(f"not a base58 32-byte Solana address: {value!r}") from exc
        return value

    @property
    def domain(self) -> bytes:
        return bytes.fromhex(self.domain_tag)


class Settings(Section):
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)  # type: ignore[arg-type]
    local_kafka: LocalKafkaSettings = Field(default_factory=LocalKafkaSettings)  # type: ignore[arg-type]
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)  # type: ignore[arg-type]


def _env_overrides(environ: dict[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Nested dict of MACHPAY_A__B=value variables, and which variable set each path."""
    tree: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in {CONFIG_ENV, "MACHPAY_CACHE"}:
            continue
        path = tuple(p.lower() for p in name[len(ENV_PREFIX) :].split(ENV_NESTED_DELIMITER))
        if len(path) < 2 or not all(path):
            continue
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another setting")
        node[path[-1]] = value
        origin[path] = name
    return tree, origin


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    path: Path | str | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Read, merge and validate settings; raise ConfigError naming the bad setting."""
    env = dict(os.environ if environ is None else environ)
    file_path = Path(path) if path is not None else None
    if file_path is None and env.get(CONFIG_ENV):
        file_path = Path(env[CONFIG_ENV])

    data: dict[str, Any] = {}
    if file_path is not None:
        try:
            with file_path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {file_path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file_path} is not valid TOML: {exc}") from exc

    env_tree, env_origin = _env_overrides(env)
    merged = _merge(_merge(data, env_tree), overrides or {})
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, file_path, env_origin)) from exc


def _describe(
    exc: ValidationError, file_path: Path | None, env_origin: dict[tuple[str, ...], str]
) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        setting = ".".join(loc) or "(root)"
        if loc in env_origin:
            source = f"environment variable {env_origin[loc]}"
        elif file_path is not None:
            source = f"config file {file_path}"
        else:
            source = "defaults"
        message = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"setting {setting} ({source}): {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
