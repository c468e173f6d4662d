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
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

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


_ROUTE_PATH = re.compile(r"^/(?:[^{}\s?#]|\{[A-Za-z_][A-Za-z0-9_]*(?::path)?\})*$")
_METHOD = re.compile(r"^[A-Z]+$")
#: Paths the gateway answers itself; no route may claim them.
GATEWAY_RESERVED_PATHS = ("/metrics", "/healthz", "/readyz")
U64_MAX = 2**64 - 1


def _check_route_path(value: str) -> str:
    if not _ROUTE_PATH.match(value):
        raise ValueError(
            f"{value!r} is not a route path: it must start with '/', have no query, and "
            "spell placeholders as {name} (one segment) or {name:path} (the rest)"
        )
    if value in GATEWAY_RESERVED_PATHS:
        raise ValueError(f"{value} is reserved for the gateway's own endpoints")
    return value


def _check_methods(value: list[str]) -> list[str]:
    methods = [m.upper() for m in value]
    if not methods:
        raise ValueError("at least one HTTP method is required")
    for method in methods:
        if not _METHOD.match(method):
            raise ValueError(f"{method!r} is not an HTTP method")
    if len(set(methods)) != len(methods):
        raise ValueError("an HTTP method is listed twice")
    return methods


def _check_upstream(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"{value!r} is not an http(s)://host[:port][/prefix] URL")
    if parts.query or parts.fragment:
        raise ValueError(f"upstream URL {value!r} must not have a query or fragment")
    return value.rstrip("/")


class FreeRouteSettings(Section):
    """A route the gateway proxies without asking for payment (docs, health, ...)."""

    path: str = Field(description="Path pattern, e.g. /docs or /static/{rest:path}.")
    methods: list[str] = Field(
        default_factory=lambda: ["GET"], description="HTTP methods this route covers."
    )
    upstream: str = Field(description="Base URL of the vendor API (the request path is appended).")

    @field_validator("path")
    @classmethod
    def _path_pattern(cls, value: str) -> str:
        return _check_route_path(value)

    @field_validator("methods")
    @classmethod
    def _http_methods(cls, value: list[str]) -> list[str]:
        return _check_methods(value)

    @field_validator("upstream")
    @classmethod
    def _upstream_url(cls, value: str) -> str:
        return _check_upstream(value)


class PaidRouteSettings(FreeRouteSettings):
    """A paid route: every call must carry a signed intent for ``price`` lamports."""

    service: str = Field(
        min_length=1, max_length=200, description="Service name bound into the intent context."
    )
    price: int = Field(ge=1, le=U64_MAX, description="Price of one call, lamports.")
    description: str = Field("", description="Shown to agents in the 402 resource.")
    mime_type: str = Field("", description="MIME type of the response, shown in the 402.")


class GatewaySettings(Section):
    """The vendor gateway (`machpay gateway`): a paying reverse proxy in front of an API.

    Required to start with payments on: ``vendor_keypair`` or ``vendor_address``,
    ``challenge_secret`` (hex, at least 16 bytes; put it in the environment as
    MACHPAY_GATEWAY__CHALLENGE_SECRET, never in a committed file; every replica
    of one vendor shares it) and at least one route.
    """

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8402, ge=0, le=65535, description="TCP port to listen on (0 = any free).")
    vendor_keypair: Path | None = Field(
        None, description="Vendor Solana keypair file; its address is the payTo of every route."
    )
    vendor_address: str | None = Field(
        None, description="Vendor address (base58), when the keypair is kept elsewhere."
    )
    challenge_secret: SecretStr | None = Field(
        None,
        description="HMAC key for stateless challenges, hex (>= 16 bytes). No default: "
        "set MACHPAY_GATEWAY__CHALLENGE_SECRET.",
    )
    challenge_bucket_seconds: int = Field(
        30, ge=1, le=3600, description="Challenges are issued per time bucket of this length."
    )
    challenge_max_age_seconds: int = Field(
        120,
        ge=1,
        le=86_400,
        description="A challenge is accepted this long after its bucket began.",
    )
    max_timeout_seconds: int = Field(
        60, ge=1, le=3600, description="maxTimeoutSeconds offered: the longest intent lifetime."
    )
    routes: list[PaidRouteSettings] = Field(
        default_factory=list, description="Paid routes: path pattern, methods, service, price."
    )
    free_routes: list[FreeRouteSettings] = Field(
        default_factory=list, description="Routes proxied without payment."
    )
    max_header_bytes: int = Field(
        16_384, ge=1_024, description="Total request header bytes above which the answer is 431."
    )
    max_body_bytes: int = Field(
        1 << 20, ge=0, description="Request body bytes above which the answer is 413."
    )
    upstream_timeout_seconds: float = Field(
        30.0, gt=0, description="Upstream connect/read timeout; past it the answer is 504."
    )
    upstream_max_connections: int = Field(
        100, ge=1, description="Pooled connections to the upstreams."
    )
    exposure_share: float = Field(
        0.1,
        gt=0,
        le=1,
        description="This gateway's cap on unsettled exposure to an agent, as a share of the "
        "agent's free bond (bond - pending withdrawal - exposure) from agents.status.",
    )
    unknown_agent_allowance: int = Field(
        100_000,
        ge=0,
        le=U64_MAX,
        description="Lamports an agent with no agents.status record may owe this gateway; "
        "0 refuses unknown agents (agent_unknown). The small default suits local "
        "development, where no stream processor publishes statuses; set 0 in production.",
    )
    spool_dir: Path = Field(
        default_factory=lambda: default_cache_dir() / "gateway-spool",
        description="Local append-only spool of accepted intents not yet acknowledged by Kafka.",
    )
    spool_max_bytes: int = Field(
        64 << 20,
        ge=4096,
        description="Unacknowledged spool size past which paid calls are refused (spool_full).",
    )
    spool_fsync: bool = Field(
        True,
        description="fsync the spool before answering (group commit); off trades kill -9 "
        "safety against an OS crash for latency.",
    )
    spool_commit_interval_ms: float = Field(
        0.0,
        ge=0,
        le=100,
        description="Extra wait before each spool fsync to gather more records into it; 0 "
        "syncs at once (calls arriving during a sync share the next one).",
    )
    producer_linger_ms: int = Field(
        25,
        ge=0,
        le=1_000,
        description="How long accepted intents are grouped before a produce. They are on disk "
        "before the answer, so this only delays their arrival in Kafka; 5 ms made one produce "
        "round per 2-3 intents at hundreds of calls/s (bench/bench_gateway.py).",
    )
    payments_enabled: bool = Field(
        True, description="False makes a plain reverse proxy (the benchmark baseline)."
    )

    @field_validator("vendor_address")
    @classmethod
    def _vendor_is_pubkey(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from solders.pubkey import Pubkey

        try:
            Pubkey.from_string(value)
        except ValueError as exc:
            raise ValueError(f"not a base58 32-byte Solana address: {value!r}") from exc
        return value

    @field_validator("challenge_secret")
    @classmethod
    def _secret_is_hex(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        text = value.get_secret_value()
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError("must be hex (e.g. from `openssl rand -hex 32`)") from None
        if len(raw) < 16:
            raise ValueError(f"must be at least 16 bytes (32 hex chars), got {len(raw)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GatewaySettings:
        if self.vendor_keypair is not None and self.vendor_address is not None:
            raise ValueError("set gateway.vendor_keypair or gateway.vendor_address, not both")
        if self.challenge_max_age_seconds < self.challenge_bucket_seconds:
            raise ValueError(
                "gateway.challenge_max_age_seconds must be at least "
                "gateway.challenge_bucket_seconds (else fresh challenges are refused)"
            )
        seen: dict[tuple[str, str], str] = {}
        for route in [*self.routes, *self.free_routes]:
            for method in route.methods:
                key = (method, route.path)
                if key in seen:
                    raise ValueError(f"route {method} {route.path} is configured twice")
                seen[key] = route.path
        return self

    @property
    def challenge_key(self) -> bytes | None:
        if self.challenge_secret is None:
            return None
        return bytes.fromhex(self.challenge_secret.get_secret_value())


class IngestSettings(Section):
    """The receiver (`machpay ingest`): HTTP ingress for intents and SDK telemetry.

    Required to start: ``keys_file``, the API-key store (TOML or JSON; see
    ingest/README.md). Every limit below answers with a status that names it.
    """

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8403, ge=0, le=65535, description="TCP port to listen on (0 = any free).")
    keys_file: Path | None = Field(
        None,
        description="API-key store: SHA-256 hashes of keys -> principal, role and binding. "
        "Re-read when the file changes, so removing a key revokes it.",
    )
    instance_id: str | None = Field(
        None,
        max_length=200,
        description="Producer name written into every record; default ingest-<host>-<pid>.",
    )
    max_body_bytes: int = Field(
        4 << 20, ge=1_024, description="Request body bytes above which the answer is 413."
    )
    max_records_per_batch: int = Field(
        5_000, ge=1, description="Intents or log records per request above which the answer is 413."
    )
    max_in_flight_records: int = Field(
        50_000,
        ge=1,
        description="Records handed to the producer and not yet acknowledged, above which "
        "new requests are answered 429 with Retry-After.",
    )
    max_in_flight_bytes: int = Field(
        32 << 20,
        ge=1_024,
        description="Encoded bytes handed to the producer and not yet acknowledged, above "
        "which new requests are answered 429 with Retry-After.",
    )
    produce_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="How long a request waits for the broker's acknowledgement before the "
        "answer is 503 with Retry-After.",
    )
    retry_after_seconds: int = Field(
        1, ge=1, le=3600, description="Retry-After sent with 429 and 503 answers."
    )
    producer_linger_ms: int = Field(
        2, ge=0, le=1_000, description="Producer linger: how long records wait to share a request."
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Server processes sharing the port. Strict signature checks cost ~57 us "
        "each and hold the GIL, so one process verifies at most ~17k intents/s: scale with "
        "processes (each has its own producer and its own in-flight bounds).",
    )
    check_domain: bool = Field(
        True,
        description="Refuse intents signed for another deployment (deployment.domain_tag).",
    )


class StreamsSettings(Section):
    """The stream processors (`machpay streams worker`): dedupe, fraud checks, exposure, batches.

    Every worker of one deployment must run with the same ``batch_max_intents``:
    batches are cut where the log says, and a replay after a crash or a
    rebalance must cut them at the same places.
    """

    group_id: str = Field(
        "machpay-streams", min_length=1, description="Consumer group shared by all workers."
    )
    worker_id: str = Field(
        "streams", min_length=1, description="Names this worker in proofs and dead letters."
    )
    batch_max_intents: int = Field(
        10_000, ge=1, le=1_000_000, description="A vendor batch closes at this many intents."
    )
    batch_max_age_ms: int = Field(
        2_000, ge=10, description="A vendor batch closes this long after its first intent."
    )
    fetch_max_records: int = Field(
        500, ge=1, description="Records (each carrying many intents) Faust hands over per chunk."
    )
    producer_linger_ms: int = Field(
        5, ge=0, le=1_000, description="How long output records are grouped before a produce."
    )
    producer_max_batch_bytes: int = Field(
        1 << 20, ge=16_384, description="Producer batch size per partition, bytes."
    )
    verify_signatures: bool = Field(
        True, description="Check every intent's Ed25519 signature again (dead-letter forgeries)."
    )
    chunk_max_intents: int = Field(
        10_000,
        ge=1,
        description="Intents applied before their outputs and table snapshot are sent.",
    )
    chunk_wait_ms: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Longest wait for a chunk to reach fetch_max_records before it is applied.",
    )
    commit_interval_ms: int = Field(
        1_000,
        ge=10,
        description="How often Faust commits offsets of applied chunks (broker_commit_interval).",
    )
    standby_replicas: int = Field(
        0,
        ge=0,
        le=8,
        description="Standby copies of the state table kept for partitions a worker does not own.",
    )
    state_replication_factor: int = Field(
        1, ge=1, le=16, description="Replication factor of the state table's changelog topic."
    )
    data_dir: Path | None = Field(
        None,
        description="Faust's data directory (state lives in memory; default: a temporary one).",
    )


def _check_pubkey(value: str) -> str:
    from solders.pubkey import Pubkey

    try:
        Pubkey.from_string(value)
    except ValueError as exc:
        raise ValueError(f"not a base58 32-byte Solana address: {value!r}") from exc
    return value


class SettleSettings(Section):
    """The settler (`machpay settle run`): batches and fraud proofs to Solana, chain events back.

    Required to start: ``payer_keypair`` (the fee payer; it also pays each new
    channel's rent). The program ids default to the ids in docs/onchain.md;
    the MachPay program id is ``deployment.machpay_program_id``.
    """

    rpc_url: str = Field(
        "http://127.0.0.1:8899", description="Solana JSON-RPC endpoint (any cluster or localnet)."
    )
    commitment: Literal["processed", "confirmed", "finalized"] = Field(
        "confirmed", description="Commitment for reads and for calling a transaction confirmed."
    )
    payer_keypair: Path | None = Field(
        None, description="Fee payer keypair file (Solana CLI JSON format). Required to run."
    )
    global_bond_program_id: str = Field(
        "GBond11111111111111111111111111111111111111",
        description="Base58 id of the GlobalBond program.",
    )
    service_registry_program_id: str = Field(
        "SvcReg1111111111111111111111111111111111111",
        description="Base58 id of the ServiceRegistry program.",
    )
    idl_dir: Path | None = Field(
        None,
        description="Folder with the programs' IDL JSON (machpay.json, global_bond.json, "
        "service_registry.json); default: programs/idl of this checkout.",
    )
    group_id: str = Field(
        "machpay-settle",
        min_length=1,
        description="Consumer group of batches.ready and fraud.proofs.",
    )
    state_dir: Path = Field(
        default_factory=lambda: default_cache_dir() / "settle",
        description="Follower checkpoint and lookup-table cache live here.",
    )
    use_lookup_table: bool = Field(
        True,
        description="Put per-channel accounts in an address lookup table (v0 transactions), "
        "created and extended by the settler and cached in state_dir.",
    )
    lookup_table: str | None = Field(
        None, description="Address of an existing lookup table to use (payer must be authority)."
    )
    max_channels_per_tx: int = Field(
        0,
        ge=0,
        le=64,
        description="Upper bound on channel settlements per transaction; 0 = as many as fit "
        "in 1,232 bytes (measured on the serialized transaction).",
    )
    compute_unit_limit: int = Field(
        0,
        ge=0,
        le=1_400_000,
        description="SetComputeUnitLimit per transaction; 0 leaves the runtime default.",
    )
    compute_unit_price: int = Field(
        0, ge=0, description="Priority fee, micro-lamports per compute unit; 0 = none."
    )
    confirm_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Warn (again every this many seconds) about a transaction not confirmed "
        "yet. It is given up only once its blockhash has expired, so it can no longer land.",
    )
    poll_interval_seconds: float = Field(
        0.4, gt=0, le=60, description="How often signature statuses are polled."
    )
    max_attempts: int = Field(
        5, ge=1, le=100, description="Transactions tried per batch part before it is FAILED."
    )
    slash_grace_seconds: float = Field(
        5.0,
        ge=0,
        le=600,
        description="Hold a fraud proof this long (and then until none of its agent's batches "
        "waits) while that agent's batches settle first, so vendors it served are paid from "
        "the bond before the slash takes the rest; 0 = submit proofs at once. Harmless: the "
        "agent is already banned at every gateway (agents.status), and a withdrawal needs the "
        "GlobalBond timelock, far longer.",
    )
    follow: bool = Field(True, description="Also run the chain follower (chain.events).")
    follow_interval_seconds: float = Field(
        1.0, gt=0, le=3600, description="How often the follower asks for new signatures."
    )
    follow_page_size: int = Field(
        500, ge=1, le=1000, description="getSignaturesForAddress page size."
    )
    status_interval_seconds: float = Field(
        10.0, gt=0, description="How often `settle run` prints a progress line."
    )

    @field_validator("global_bond_program_id", "service_registry_program_id", "lookup_table")
    @classmethod
    def _is_address(cls, value: str | None) -> str | None:
        return None if value is None else _check_pubkey(value)

    @field_validator("rpc_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s)://host[:port] URL")
        return value


class Settings(Section):
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)  # type: ignore[arg-type]
    local_kafka: LocalKafkaSettings = Field(default_factory=LocalKafkaSettings)  # type: ignore[arg-type]
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)  # type: ignore[arg-type]
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)  # type: ignore[arg-type]
    ingest: IngestSettings = Field(default_factory=IngestSettings)  # type: ignore[arg-type]
    streams: StreamsSettings = Field(default_factory=StreamsSettings)  # type: ignore[arg-type]
    settle: SettleSettings = Field(default_factory=SettleSettings)  # type: ignore[arg-type]


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


def to_toml(sections: dict[str, dict[str, Any]]) -> str:
    """Settings sections as TOML (scalars, lists of scalars, arrays of tables):
    what tools write for the services they start (the demo, tests)."""

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, list):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        return orjson.dumps(str(value)).decode()

    lines: list[str] = []
    for section, values in sections.items():
        tables = {
            k: v for k, v in values.items() if isinstance(v, list) and v and isinstance(v[0], dict)
        }
        lines.append(f"[{section}]")
        for key, value in values.items():
            if key not in tables and value is not None:
                lines.append(f"{key} = {scalar(value)}")
        for key, rows in tables.items():
            for row in rows:
                lines.append(f"[[{section}.{key}]]")
                lines.extend(f"{k} = {scalar(v)}" for k, v in row.items() if v is not None)
        lines.append("")
    return "\n".join(lines)
