"""Start, stop and inspect the local Kafka broker: one node, or a KRaft cluster of several.

The broker's jars come from Maven Central through ``infra/pom.xml``; Maven keeps them in
``~/.m2`` and we only keep the resolved classpath. Data lives under ``settings.kafka_dir``
(``node-N`` per node of a cluster) so a restart keeps every topic and offset.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from infra.net import NonLoopbackError, require_loopback


class KafkaSection(Protocol):
    """The Kafka part of the project's settings that the broker reads."""

    controller_port: int
    heap: str
    node_heap: str
    nodes: int
    partitions: int

    @property
    def replicas(self) -> int: ...

    @property
    def min_insync(self) -> int: ...

    def bootstrap_servers(self) -> list[str]: ...


class BrokerSettings(Protocol):
    """What the broker needs of the project's settings (``stream.config.Settings`` has it);
    infra/ imports nothing from the rest of the project."""

    @property
    def kafka_dir(self) -> Path: ...

    @property
    def kafka(self) -> KafkaSection: ...

    @property
    def allow_non_loopback(self) -> bool: ...

    def replace(self, **changes: Any) -> Any: ...


INFRA_DIR = Path(__file__).resolve().parent
POM = INFRA_DIR / "pom.xml"
PROPERTIES_TEMPLATE = INFRA_DIR / "broker.properties"
LOG4J = INFRA_DIR / "log4j2.xml"


class BrokerError(RuntimeError):
    pass


class BrokerPaths(NamedTuple):
    """The files of one broker node (or of the shared classpath) under ``root``."""

    root: Path
    data: Path
    properties: Path
    classpath: Path
    classpath_stamp: Path
    pid: Path
    log: Path

    @classmethod
    def under(cls, root: Path) -> BrokerPaths:
        names = ("data", "server.properties", "classpath.txt", "classpath.pom.sha256")
        return cls(root, *(root / n for n in (*names, "broker.pid", "broker.log")))


def _host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise BrokerError(f"SWINGDIAL_KAFKA_BOOTSTRAP must look like host:port, got {bootstrap!r}")
    return host, int(port)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def resolve_classpath(paths: BrokerPaths, quiet: bool = True) -> str:
    """Resolve the broker's jars with Maven once per version of the pom."""
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()
    if (
        paths.classpath.exists()
        and paths.classpath_stamp.exists()
        and paths.classpath_stamp.read_text() == pom_hash
    ):
        return paths.classpath.read_text().strip()
    paths.root.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mvn",
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(POM),
        "dependency:build-classpath",
        f"-Dmdep.outputFile={paths.classpath}",
    ]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BrokerError(
            "Maven (mvn) is not installed; install it (apt-get install maven)"
        ) from None
    if result.returncode != 0:
        raise BrokerError(
            f"Maven could not resolve Apache Kafka:\n{result.stdout}\n{result.stderr}"
        )
    paths.classpath_stamp.write_text(pom_hash)
    return paths.classpath.read_text().strip()


@dataclass(frozen=True)
class NodeSpec:
    """One KRaft node (broker + controller in one JVM) of the local cluster."""

    node_id: int
    host: str
    port: int
    controller_port: int
    root: Path


def cluster_layout(settings: BrokerSettings, nodes: int | None = None) -> list[NodeSpec]:
    """The nodes ``broker start`` runs: one per bootstrap address (ports + 2*i if only one).

    A single node keeps its data directly under ``kafka_dir`` (as before clusters existed);
    node N of a cluster under ``kafka_dir/node-N``.
    """
    count = nodes or settings.kafka.nodes
    servers = settings.replace(kafka_nodes=count).kafka.bootstrap_servers()
    if len(servers) != count:
        raise BrokerError(
            f"SWINGDIAL_KAFKA_BOOTSTRAP lists {len(servers)} addresses for {count} nodes; "
            "give one address (the others use its port + 2, + 4, ...) or one per node"
        )
    specs = []
    for index, server in enumerate(servers):
        host, port = _host_port(server)
        root = settings.kafka_dir if count == 1 else settings.kafka_dir / f"node-{index + 1}"
        specs.append(
            NodeSpec(index + 1, host, port, settings.kafka.controller_port + 2 * index, root)
        )
    ports = [p for spec in specs for p in (spec.port, spec.controller_port)]
    if len(set(ports)) != len(ports):
        raise BrokerError(f"the nodes' listener and controller ports overlap: {ports}")
    return specs


def _check_loopback(settings: BrokerSettings, host: str) -> None:
    # Checked before anything connects: the local broker never listens off this machine.
    try:
        require_loopback(host, "the local Kafka broker", settings.allow_non_loopback)
    except NonLoopbackError as exc:
        raise BrokerError(
            f"{exc} (for your own cluster set SWINGDIAL_KAFKA_BOOTSTRAP and skip `broker start`)"
        ) from None


class BrokerNode:
    """One broker JVM: its properties, storage, pid file and log under ``spec.root``."""

    def __init__(self, settings: BrokerSettings, spec: NodeSpec, voters: str, heap: str) -> None:
        self.settings = settings
        self.spec = spec
        self.voters = voters
        self.heap = heap
        self.paths = BrokerPaths.under(spec.root)

    def pid(self) -> int | None:
        return _live_pid(self.paths.pid)

    def listening(self) -> bool:
        return _port_open(self.spec.host, self.spec.port)

    def status(self) -> dict[str, object]:
        return {
            "node": self.spec.node_id,
            "address": f"{self.spec.host}:{self.spec.port}",
            "pid": self.pid(),
            "listening": self.listening(),
            "data_dir": str(self.paths.data),
            "log": str(self.paths.log),
        }

    def write_properties(self) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        text = PROPERTIES_TEMPLATE.read_text().format(
            node_id=self.spec.node_id,
            voters=self.voters,
            host=self.spec.host,
            port=self.spec.port,
            controller_port=self.spec.controller_port,
            data_dir=self.paths.data,
            partitions=self.settings.kafka.partitions,
            replication=self.settings.kafka.replicas,
            min_isr=self.settings.kafka.min_insync,
        )
        self.paths.properties.write_text(text)

    def cluster_id(self) -> str | None:
        """The id this node's storage was formatted with, if it was."""
        try:
            text = (self.paths.data / "meta.properties").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return None

    def format_storage(self, classpath: str, cluster_id: str) -> None:
        if (self.paths.data / "meta.properties").exists():
            return
        self.paths.data.mkdir(parents=True, exist_ok=True)
        cmd = _java(
            classpath,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",  # one token: a base64 id may start with "-"
            "-c",
            str(self.paths.properties),
        )
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def launch(self, classpath: str) -> subprocess.Popen:
        cmd = _java(classpath, "kafka.Kafka", str(self.paths.properties), heap=self.heap)
        with open(self.paths.log, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it
            )
        self.paths.pid.write_text(str(proc.pid))
        return proc

    def send_signal(self, signum: int) -> int | None:
        """Send ``signum`` to the JVM (tests kill nodes with it); returns its pid."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signum)
        return pid


class Broker:
    """The local KRaft cluster described by ``settings``: ``kafka_nodes`` combined nodes on
    loopback (one node by default), data under ``kafka_dir``."""

    def __init__(self, settings: BrokerSettings, nodes: int | None = None) -> None:
        count = nodes or settings.kafka.nodes
        self.settings = settings.replace(kafka_nodes=count)
        specs = cluster_layout(self.settings)
        voters = ",".join(f"{s.node_id}@{s.host}:{s.controller_port}" for s in specs)
        heap = settings.kafka.heap if count == 1 else settings.kafka.node_heap
        self.nodes = [BrokerNode(self.settings, spec, voters, heap) for spec in specs]
        self.paths = BrokerPaths.under(settings.kafka_dir)  # shared: the resolved classpath
        first = specs[0]
        self.host, self.port = first.host, first.port

    # --- state -------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The first node's pid (the only one for a single broker)."""
        return self.nodes[0].pid()

    def pids(self) -> list[int | None]:
        return [node.pid() for node in self.nodes]

    def listening(self) -> bool:
        return all(node.listening() for node in self.nodes)

    def status(self) -> dict[str, object]:
        info: dict[str, object] = {
            "bootstrap": ",".join(self.settings.kafka.bootstrap_servers()),
            "nodes": len(self.nodes),
            "pid": self.pid(),
            "listening": self.listening(),
        }
        if len(self.nodes) == 1:
            info |= {"data_dir": str(self.nodes[0].paths.data), "log": str(self.nodes[0].paths.log)}
        else:
            for node in self.nodes:
                st = node.status()
                info[f"node-{node.spec.node_id}"] = (
                    f"{st['address']} pid={st['pid']} listening={st['listening']} log={st['log']}"
                )
        return info

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, wait_s: float = 120.0) -> int:
        """Start every node that is not running (idempotent) and wait until all answer.

        Returns the first node's pid. The nodes start together: a KRaft quorum of three
        elects its controller only once two of them run.
        """
        for node in self.nodes:
            _check_loopback(self.settings, node.spec.host)
        for node in self.nodes:
            if node.listening() and node.pid() is None:
                raise BrokerError(
                    f"something else listens on {node.spec.host}:{node.spec.port}; set "
                    "SWINGDIAL_KAFKA_BOOTSTRAP to use it, or free the port"
                )
        classpath = resolve_classpath(self.paths)
        cluster_id = next((c for n in self.nodes if (c := n.cluster_id())), None) or _kafka_uuid()
        started: list[tuple[BrokerNode, subprocess.Popen]] = []
        for node in self.nodes:
            if node.pid() is not None and node.listening():
                continue
            node.write_properties()
            node.format_storage(classpath, cluster_id)
            started.append((node, node.launch(classpath)))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for node, proc in started:
                if proc.poll() is not None:
                    raise BrokerError(
                        f"broker node {node.spec.node_id} exited with code {proc.returncode}; "
                        f"see {node.paths.log}:\n" + _tail(node.paths.log)
                    )
            if self.listening():
                return self.pid() or 0
            time.sleep(0.3)
        raise BrokerError(
            f"the broker did not listen within {wait_s:.0f}s; see "
            + ", ".join(str(node.paths.log) for node in self.nodes)
        )

    def stop(self, wait_s: float = 60.0) -> bool:
        """Stop every node of this home (single broker and cluster nodes alike): controlled
        shutdown (SIGTERM) for all at once, SIGKILL only for a node that hangs. Returns
        False if none was running."""
        pid_files = [self.paths.pid, *sorted(self.settings.kafka_dir.glob("node-*/broker.pid"))]
        running = {f: pid for f in pid_files if (pid := _live_pid(f)) is not None}
        for pid_file in pid_files:
            if pid_file not in running:
                pid_file.unlink(missing_ok=True)
        if not running:
            return False
        for pid in running.values():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if all(_live_pid(f) is None for f in running):
                break
            time.sleep(0.2)
        for pid_file, pid in running.items():
            if _live_pid(pid_file) is not None:
                os.kill(pid, signal.SIGKILL)
            pid_file.unlink(missing_ok=True)
        return True


def _live_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    if _zombie(pid):  # dead; our own child (a test's broker) until reaped
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return None
    return pid


def _java(classpath: str, *args: str, heap: str | None = None) -> list[str]:
    java = os.environ.get("JAVA_HOME")
    exe = str(Path(java) / "bin" / "java") if java else "java"
    jvm = [f"-Xmx{heap}", f"-Xms{heap}"] if heap else ["-Xmx256m"]
    return [
        exe,
        *jvm,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J}",
        "-cp",
        classpath,
        *args,
    ]


def _kafka_uuid() -> str:
    """A cluster id in Kafka's format: a URL-safe base64 UUID without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] == "Z"
    except OSError:
        return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def prefetch(kafka_dir: Path) -> None:
    """Resolve the broker's jars now (setup step), so the first start is quick."""
    resolve_classpath(BrokerPaths.under(kafka_dir))
