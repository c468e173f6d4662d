"""A real single-node Apache Kafka broker (KRaft combined mode) without Docker.

The broker jars come from Maven (``org.apache.kafka:kafka_2.13`` plus its
dependencies and an SLF4J→Log4j binding), fetched once per Kafka version
into ``<local_kafka.home>/<version>/libs``. A data directory holds the
generated ``server.properties``, the KRaft storage, logs and the pid file::

    <data>/server.properties     regenerated on every start from the settings
    <data>/log4j2.properties     (log4j.properties for Kafka 3.x)
    <data>/kraft/                log.dirs: metadata log and topic partitions
    <data>/logs/server.log       the broker's log; logs/stdout.log the JVM's
    <data>/broker.pid
    <data>/machpay-broker.json   version, cluster id and controller endpoint
                                 the storage was formatted with

Kafka 4.x is formatted with a dynamic quorum (``--standalone`` and
``controller.quorum.bootstrap.servers``); 3.x with the static
``controller.quorum.voters``. Use :class:`LocalBroker` from Python or
``machpay kafka up|down|status|topics`` from a shell.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machpay import daemons
from machpay.config import KafkaSettings, LocalKafkaSettings, Settings, load_settings

if TYPE_CHECKING:
    from machpay.kafka.admin import TopicResult

__all__ = [
    "BrokerError",
    "BrokerStatus",
    "LocalBroker",
    "PortInUseError",
    "ToolMissingError",
    "find_java",
    "free_port",
    "java_major_version",
    "render_server_properties",
]

Echo = Callable[[str], None]

NODE_ID = 1
LOG4J2_VERSION = "2.24.3"
"""Log4j 2 line Kafka 4.1's own distribution ships (log4j-api, -core, -slf4j-impl)."""
SLF4J_RELOAD4J_VERSION = "1.7.36"
"""Kafka 3.x ships SLF4J 1.7 bound to reload4j (log4j 1.2 API)."""
RELOAD4J_VERSION = "1.2.25"
MARKER = ".machpay-complete"
STATE_FILE = "machpay-broker.json"
PID_FILE = "broker.pid"


class BrokerError(Exception):
    """The local broker could not be fetched, formatted, started or stopped."""


class ToolMissingError(BrokerError):
    """``java`` or ``mvn`` is missing or too old; the message says what to install."""


class PortInUseError(BrokerError):
    """A port the broker needs is taken; the message names the port and its setting."""


def _default_echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def kafka_version_tuple(version: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", version)
    if not parts:
        raise BrokerError(f"local_kafka.version {version!r} is not a Kafka version like 4.1.1")
    return tuple(int(p) for p in parts[:3])


def required_java(version: str) -> int:
    """Kafka 4.x brokers need Java 17; 3.x run on 11 (8 is deprecated there)."""
    return 17 if kafka_version_tuple(version)[0] >= 4 else 11


def find_java() -> Path:
    """``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return candidate
        raise ToolMissingError(
            f"JAVA_HOME is {java_home} but {candidate} is not an executable java; "
            "point JAVA_HOME at a Java 17+ runtime or unset it to use java from PATH"
        )
    found = shutil.which("java")
    if not found:
        raise ToolMissingError(
            "java not found: the local Kafka broker needs a Java 17+ runtime on PATH "
            "or in JAVA_HOME (e.g. apt-get install openjdk-17-jre-headless)"
        )
    return Path(found)


def java_major_version(java: Path) -> int:
    """Major version of a java executable (8 for 1.8.x), from ``java -version``."""
    try:
        proc = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise ToolMissingError(f"cannot run {java}: {exc}") from exc
    text = proc.stderr + proc.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        raise ToolMissingError(f"cannot tell the Java version of {java}: {text.strip()[:200]!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def render_server_properties(local: LocalKafkaSettings, data_dir: Path) -> str:
    """``server.properties`` for a single-node combined broker+controller.

    Every internal topic gets replication factor 1 and min ISR 1 (one node),
    the consumer-offsets topic only a few partitions so the first group join
    is quick, group joins are not delayed, the minimum session timeout is
    low for tests, and topics are never auto-created: they come from
    ``machpay.topics``.
    """
    major = kafka_version_tuple(local.version)[0]
    host, port, cport = local.host, local.port, local.controller_port
    lines = [
        "# Generated by machpay.kafka.broker on every start; edits are overwritten.",
        "process.roles=broker,controller",
        f"node.id={NODE_ID}",
    ]
    if major >= 4:
        lines += [
            f"controller.quorum.bootstrap.servers={host}:{cport}",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            f"advertised.listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
        ]
    else:
        lines += [
            f"controller.quorum.voters={NODE_ID}@{host}:{cport}",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
        ]
    lines += [
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={data_dir / 'kraft'}",
        f"num.partitions={local.partitions}",
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=4",
    ]
    if major >= 4:
        lines += [
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
        ]
    lines += [
        "group.initial.rebalance.delay.ms=0",
        "group.min.session.timeout.ms=500",
        "auto.create.topics.enable=false",
        "delete.topic.enable=true",
        "num.network.threads=2",
        "num.io.threads=4",
        "log.retention.check.interval.ms=60000",
    ]
    return "\n".join(lines) + "\n"


def _log4j_config(version: str, log_dir: Path | None) -> tuple[str, str]:
    """(file name, content) of the logging config: to log_dir, or WARN to stderr for tools."""
    major = kafka_version_tuple(version)[0]
    if major >= 4:
        if log_dir is None:
            body = [
                "status = warn",
                "appender.err.type = Console",
                "appender.err.name = ERR",
                "appender.err.target = SYSTEM_ERR",
                "appender.err.layout.type = PatternLayout",
                "appender.err.layout.pattern = %p %m%n",
                "rootLogger.level = WARN",
                "rootLogger.appenderRef.err.ref = ERR",
            ]
            return "tools-log4j2.properties", "\n".join(body) + "\n"
        log = log_dir / "server.log"
        body = [
            "status = warn",
            "appender.file.type = RollingFile",
            "appender.file.name = FILE",
            f"appender.file.fileName = {log}",
            f"appender.file.filePattern = {log}.%i",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "appender.file.policies.type = Policies",
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
            "appender.file.policies.size.size = 20MB",
            "appender.file.strategy.type = DefaultRolloverStrategy",
            "appender.file.strategy.max = 3",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = FILE",
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
        ]
        return "log4j2.properties", "\n".join(body) + "\n"
    if log_dir is None:
        body = [
            "log4j.rootLogger=WARN, stderr",
            "log4j.appender.stderr=org.apache.log4j.ConsoleAppender",
            "log4j.appender.stderr.Target=System.err",
            "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout",
            "log4j.appender.stderr.layout.ConversionPattern=%p %m%n",
        ]
        return "tools-log4j.properties", "\n".join(body) + "\n"
    body = [
        "log4j.rootLogger=INFO, file",
        "log4j.appender.file=org.apache.log4j.RollingFileAppender",
        f"log4j.appender.file.File={log_dir / 'server.log'}",
        "log4j.appender.file.MaxFileSize=20MB",
        "log4j.appender.file.MaxBackupIndex=3",
        "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
        "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
        "log4j.logger.kafka.request.logger=WARN",
    ]
    return "log4j.properties", "\n".join(body) + "\n"


def _log4j_flags(version: str, config: Path) -> list[str]:
    if kafka_version_tuple(version)[0] >= 4:
        # Log4j 2's own shutdown hook would stop logging while Kafka's hook is
        # still shutting down, losing the last lines ("shut down completed").
        return [f"-Dlog4j2.configurationFile={config}", "-Dlog4j2.shutdownHookEnabled=false"]
    return [f"-Dlog4j.configuration=file:{config}"]


def _pom(version: str) -> str:
    """A POM whose runtime dependencies are exactly the broker's classpath."""
    deps = [("org.apache.kafka", "kafka_2.13", version)]
    if kafka_version_tuple(version)[0] >= 4:
        deps += [
            ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J2_VERSION),
            ("org.apache.logging.log4j", "log4j-core", LOG4J2_VERSION),
        ]
    else:
        deps += [
            ("org.slf4j", "slf4j-reload4j", SLF4J_RELOAD4J_VERSION),
            ("ch.qos.reload4j", "reload4j", RELOAD4J_VERSION),
        ]
    dep_xml = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by machpay.kafka.broker: the jars of a Kafka {version} broker. -->
<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>machpay.local</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{dep_xml}
  </dependencies>
</project>
"""


# Brokers this process started, by pid, so any LocalBroker instance (for
# example `up` and `down` run through click's CliRunner) can reap its child.


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """A snapshot of the local broker, as ``machpay kafka status`` prints it."""

    running: bool
    pid: int | None
    bootstrap: str
    controller: str
    data_dir: Path
    version: str
    formatted: bool
    log_file: Path
    topics: dict[str, int] = field(default_factory=dict)
    """Topic -> partitions (internal topics hidden); empty when not running."""


class LocalBroker:
    """One single-node KRaft broker whose files live in ``data_dir``.

    ``local`` decides version, ports, heap and where jars are cached;
    ``data_dir`` defaults to ``<local.home>/data``. Methods print progress
    through ``echo`` (stderr by default).
    """

    def __init__(
        self,
        local: LocalKafkaSettings | None = None,
        *,
        data_dir: Path | None = None,
        echo: Echo | None = None,
    ) -> None:
        self.local = local if local is not None else load_settings().local_kafka
        self.data_dir = (data_dir or self.local.home / "data").expanduser().resolve()
        self.echo: Echo = echo or _default_echo

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> LocalBroker:
        return cls(settings.local_kafka, **kwargs)

    # -- paths -----------------------------------------------------------------

    @property
    def version(self) -> str:
        return self.local.version

    @property
    def dist_dir(self) -> Path:
        return self.local.home.expanduser() / self.version

    @property
    def libs_dir(self) -> Path:
        return self.dist_dir / "libs"

    @property
    def bootstrap(self) -> str:
        return f"{self.local.host}:{self.local.port}"

    @property
    def controller(self) -> str:
        return f"{self.local.host}:{self.local.controller_port}"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / PID_FILE

    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    def kafka_settings(self, **update: Any) -> KafkaSettings:
        """Client settings pointing at this broker."""
        return KafkaSettings.model_validate({"bootstrap_servers": self.bootstrap, **update})

    # -- tools -------------------------------------------------------------------

    def check_java(self) -> Path:
        """The java executable to use; ToolMissingError if missing or too old."""
        java = find_java()
        major = java_major_version(java)
        need = required_java(self.version)
        if major < need:
            raise ToolMissingError(
                f"Kafka {self.version} needs Java {need} or newer, but {java} is Java {major}; "
                f"install Java {need}+ or point JAVA_HOME at it"
            )
        return java

    def _java_cmd(self, java: Path, log_config: Path, *args: str, heap: str | None) -> list[str]:
        cmd = [str(java)]
        if heap:
            cmd += [
                f"-Xmx{heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
            ]
        else:
            cmd += ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
        cmd += [
            "-Djava.awt.headless=true",
            *_log4j_flags(self.version, log_config),
            "-cp",
            str(self.libs_dir / "*"),
            *args,
        ]
        return cmd

    def _run_tool(self, java: Path, *args: str) -> str:
        name, content = _log4j_config(self.version, None)
        config = self.dist_dir / name
        if not config.exists() or config.read_text() != content:
            config.write_text(content)
        cmd = self._java_cmd(java, config, "kafka.tools.StorageTool", *args, heap=None)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise BrokerError(
                f"kafka-storage {args[0]} failed (exit {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr).strip()}"
            )
        return proc.stdout.strip()

    # -- fetch -------------------------------------------------------------------

    def is_fetched(self) -> bool:
        return (self.libs_dir / MARKER).is_file()

    def fetch(self) -> Path:
        """Put the broker's jars in ``libs_dir`` with Maven; skipped when already complete."""
        if self.is_fetched():
            return self.libs_dir
        self.check_java()
        mvn = shutil.which("mvn")
        if not mvn:
            raise ToolMissingError(
                "mvn (Apache Maven) not found on PATH: it downloads the Kafka broker jars "
                f"once into {self.libs_dir} (e.g. apt-get install maven)"
            )
        self.dist_dir.mkdir(parents=True, exist_ok=True)
        pom = self.dist_dir / "pom.xml"
        pom.write_text(_pom(self.version))
        staging = self.dist_dir / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        self.echo(f"fetching Kafka {self.version} broker jars with Maven into {self.libs_dir} ...")
        started = time.monotonic()
        cmd = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            output = (proc.stdout + proc.stderr).strip().splitlines()
            raise BrokerError(
                f"Maven could not fetch Kafka {self.version} (exit {proc.returncode}); "
                "is the version published and the Maven repository reachable?\n"
                + "\n".join(output[-25:])
            )
        jars = sorted(p.name for p in staging.glob("*.jar"))
        if not any(j.startswith(f"kafka_2.13-{self.version}") for j in jars):
            raise BrokerError(
                f"Maven finished but kafka_2.13-{self.version}.jar is not in {staging}"
            )
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        staging.rename(self.libs_dir)
        (self.libs_dir / MARKER).write_text("\n".join(jars) + "\n")
        size = sum(p.stat().st_size for p in self.libs_dir.glob("*.jar")) / 1e6
        self.echo(f"fetched {len(jars)} jars ({size:.0f} MB) in {time.monotonic() - started:.1f}s")
        return self.libs_dir

    # -- format ------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        return state

    def is_formatted(self) -> bool:
        return (self.data_dir / "kraft" / "meta.properties").is_file()

    def _write_configs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self.properties_file.write_text(render_server_properties(self.local, self.data_dir))
        name, content = _log4j_config(self.version, self.log_dir)
        (self.data_dir / name).write_text(content)

    def format(self) -> str:
        """Format KRaft storage in ``data_dir`` unless it already is; returns the cluster id."""
        state = self._read_state()
        if self.is_formatted():
            if state is None:
                raise BrokerError(
                    f"{self.data_dir} holds KRaft storage this tool did not write; "
                    "use another data dir or start fresh"
                )
            self._check_compatible(state)
            return str(state["cluster_id"])
        self.fetch()
        java = self.check_java()
        self._write_configs()
        cluster_id = self._run_tool(java, "random-uuid").splitlines()[-1].strip()
        args = ["format", "-t", cluster_id, "-c", str(self.properties_file)]
        if kafka_version_tuple(self.version)[0] >= 4:
            args.insert(1, "--standalone")
        self._run_tool(java, *args)
        self.state_file.write_text(
            json.dumps(
                {
                    "version": self.version,
                    "cluster_id": cluster_id,
                    "host": self.local.host,
                    "controller_port": self.local.controller_port,
                    "node_id": NODE_ID,
                },
                indent=2,
            )
        )
        self.echo(f"formatted KRaft storage in {self.data_dir} (cluster id {cluster_id})")
        return cluster_id

    def _check_compatible(self, state: dict[str, Any]) -> None:
        if state.get("version") != self.version:
            raise BrokerError(
                f"{self.data_dir} was formatted by Kafka {state.get('version')}, "
                f"local_kafka.version is {self.version}; use --fresh to wipe it "
                "(or another --data-dir)"
            )
        endpoint = (state.get("host"), state.get("controller_port"))
        if endpoint != (self.local.host, self.local.controller_port):
            raise BrokerError(
                f"{self.data_dir} was formatted with the controller at "
                f"{endpoint[0]}:{endpoint[1]}, settings say {self.controller} "
                "(local_kafka.host / local_kafka.controller_port); the KRaft quorum "
                "remembers its endpoint, so use the old values or --fresh"
            )

    def wipe(self) -> None:
        """Delete the data directory (storage, logs, configs); the broker must be stopped."""
        if self.running_pid() is not None:
            raise BrokerError(f"the broker on {self.data_dir} is running; stop it first")
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
            self.echo(f"wiped {self.data_dir}")

    # -- run ---------------------------------------------------------------------

    def running_pid(self) -> int | None:
        """The pid of this data dir's broker if it is alive, else None (stale pid files go)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if daemons.alive(pid):
            cmd = daemons.cmdline(pid)
            if cmd is None or ("kafka.Kafka" in cmd and str(self.properties_file) in cmd):
                return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, *, timeout: float = 90.0, die_with_parent: bool = False) -> int:
        """Start the broker detached and wait until it serves metadata and groups.

        Returns the pid. When this data dir's broker already runs, says so and
        returns its pid. Fetches and formats first when needed. With
        ``die_with_parent`` (Linux; used by the pytest fixture) the kernel sends
        the broker SIGTERM if this process dies without stopping it.
        """
        pid = self.running_pid()
        if pid is not None:
            self.echo(f"Kafka broker already running (pid {pid}) for {self.data_dir}")
            return pid
        for port, setting in (
            (self.local.port, "local_kafka.port"),
            (self.local.controller_port, "local_kafka.controller_port"),
        ):
            if not daemons.port_free(self.local.host, port):
                raise PortInUseError(
                    f"port {port} on {self.local.host} is already in use (setting {setting}, "
                    f"env MACHPAY_{setting.upper().replace('.', '__')}); stop what listens "
                    "there or pick another port"
                )
        if self.local.port == self.local.controller_port:
            raise BrokerError(
                "local_kafka.port and local_kafka.controller_port must differ "
                f"(both are {self.local.port})"
            )
        self.format()
        java = self.check_java()
        self._write_configs()
        name, _ = _log4j_config(self.version, self.log_dir)
        cmd = self._java_cmd(
            java,
            self.data_dir / name,
            "kafka.Kafka",
            str(self.properties_file),
            heap=self.local.heap,
        )
        stdout_log = self.log_dir / "stdout.log"
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        started = time.monotonic()
        with stdout_log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=daemons.parent_death_signal if die_with_parent else None,  # noqa: PLW1509
            )
        daemons.adopt(proc)
        self.pid_file.write_text(f"{proc.pid}\n")
        try:
            self._wait_ready(proc.pid, started + timeout)
        except BaseException as exc:
            tail = self._log_tail(log_offset)
            self._kill(proc.pid, grace=5.0)
            if isinstance(exc, BrokerError):
                raise BrokerError(f"{exc}\n{tail}") from None
            raise
        self.echo(
            f"Kafka {self.version} broker up (pid {proc.pid}) on {self.bootstrap} "
            f"in {time.monotonic() - started:.1f}s"
        )
        return proc.pid

    def _log_tail(self, offset: int = 0, lines: int = 30) -> str:
        chunks = []
        for path, start in ((self.log_file, offset), (self.log_dir / "stdout.log", 0)):
            try:
                with path.open("rb") as fh:
                    fh.seek(start if path.stat().st_size >= start else 0)
                    text = fh.read().decode(errors="replace")
            except OSError:
                continue
            last = text.strip().splitlines()[-lines:]
            if last:
                chunks.append(f"--- last lines of {path} ---\n" + "\n".join(last))
        return "\n".join(chunks) or f"(no log output in {self.log_dir})"

    def _wait_ready(self, pid: int, deadline: float) -> None:
        from machpay.kafka.admin import run_sync

        error: BaseException | None = None
        while time.monotonic() < deadline:
            if not daemons.alive(pid):
                raise BrokerError(f"the Kafka broker (pid {pid}) exited during start-up")
            try:
                with _quiet("aiokafka"):
                    run_sync(_probe(self.bootstrap))
            except Exception as exc:  # not up yet: connection refused, coordinator loading
                error = exc
                time.sleep(0.2)
                continue
            return
        raise BrokerError(
            f"the Kafka broker (pid {pid}) did not answer on {self.bootstrap} in time"
            + (f" (last error: {error!r})" if error else "")
        )

    def stop(self, *, timeout: float = 30.0) -> bool:
        """SIGTERM, wait for a clean shutdown, SIGKILL after ``timeout``; False if not running."""
        pid = self.running_pid()
        if pid is None:
            return False
        started = time.monotonic()
        clean = self._kill(pid, grace=timeout)
        self.echo(
            f"Kafka broker (pid {pid}) stopped in {time.monotonic() - started:.1f}s"
            + ("" if clean else f" (killed after {timeout:.0f}s)")
        )
        return True

    def _kill(self, pid: int, *, grace: float) -> bool:
        """Terminate and reap ``pid``; True when it exited before the grace period ended."""
        clean = daemons.terminate(pid, grace=grace, kill_wait=10.0)
        self.pid_file.unlink(missing_ok=True)
        return clean

    def status(self, *, with_topics: bool = True) -> BrokerStatus:
        pid = self.running_pid()
        topics: dict[str, int] = {}
        if pid is not None and with_topics:
            from machpay.kafka.admin import list_topics

            with contextlib.suppress(Exception):
                topics = list_topics(self.kafka_settings(request_timeout_ms=5000))
        state = self._read_state() or {}
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=self.bootstrap,
            controller=self.controller,
            data_dir=self.data_dir,
            version=str(state.get("version", self.version)),
            formatted=self.is_formatted(),
            log_file=self.log_file,
            topics=topics,
        )

    # -- topics ------------------------------------------------------------------

    def create_topics(self, prefix: str = "", **kwargs: Any) -> list[TopicResult]:
        """Create machpay.topics on this broker (see :func:`machpay.kafka.admin.create_topics`)."""
        from machpay.kafka.admin import create_topics

        return create_topics(self._settings(prefix), prefix, **kwargs)

    def delete_topics(self, prefix: str = "", **kwargs: Any) -> list[str]:
        from machpay.kafka.admin import delete_topics

        return delete_topics(self._settings(prefix), prefix, **kwargs)

    def _settings(self, prefix: str) -> Settings:
        return Settings(
            kafka=self.kafka_settings(topic_prefix=prefix),
            local_kafka=self.local,
        )


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a library's connection errors while polling a broker that is still starting."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def _probe(bootstrap: str) -> None:
    """Succeeds once the broker serves metadata and a group coordinator.

    Asking for a coordinator creates ``__consumer_offsets``, so the first
    consumer group of a test run does not pay for it.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="machpay-broker-probe", request_timeout_ms=5000
    )
    try:
        await client.start()
        cluster = await client.describe_cluster()
        if not cluster.get("brokers"):
            raise BrokerError("no brokers registered yet")
        await client.find_coordinator("machpay-broker-probe")
    finally:
        await client.close()
