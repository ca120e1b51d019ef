"""Start, stop and inspect the local single-node Kafka broker.

The broker's jars come from Maven Central through ``infra/pom.xml``; Maven keeps them in
``~/.m2`` and we only keep the resolved classpath. Data lives under ``Settings.kafka_dir``
so a restart keeps every topic and offset.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from stream.config import Settings

INFRA_DIR = Path(__file__).resolve().parent
POM = INFRA_DIR / "pom.xml"
PROPERTIES_TEMPLATE = INFRA_DIR / "broker.properties"
LOG4J = INFRA_DIR / "log4j2.xml"


class BrokerError(RuntimeError):
    pass


@dataclass
class BrokerPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def classpath(self) -> Path:
        return self.root / "classpath.txt"

    @property
    def classpath_stamp(self) -> Path:
        return self.root / "classpath.pom.sha256"

    @property
    def pid(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log(self) -> Path:
        return self.root / "broker.log"


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


class Broker:
    """The local broker described by ``settings`` (bootstrap host:port, data under home)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = BrokerPaths(settings.kafka_dir)
        self.host, self.port = _host_port(settings.kafka_bootstrap)

    # --- state -------------------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.paths.pid.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def listening(self) -> bool:
        return _port_open(self.host, self.port)

    def status(self) -> dict[str, object]:
        return {
            "bootstrap": self.settings.kafka_bootstrap,
            "pid": self.pid(),
            "listening": self.listening(),
            "data_dir": str(self.paths.data),
            "log": str(self.paths.log),
        }

    # --- lifecycle ---------------------------------------------------------------------
    def _java(self, classpath: str, *args: str, heap: str | None = None) -> list[str]:
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

    def _write_properties(self) -> None:
        text = PROPERTIES_TEMPLATE.read_text().format(
            host=self.host,
            port=self.port,
            controller_port=self.settings.kafka_controller_port,
            data_dir=self.paths.data,
            partitions=self.settings.partitions,
        )
        self.paths.properties.write_text(text)

    def _format_storage(self, classpath: str) -> None:
        if (self.paths.data / "meta.properties").exists():
            return
        self.paths.data.mkdir(parents=True, exist_ok=True)
        cluster_id = _kafka_uuid()
        cmd = self._java(
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

    def _check_loopback(self) -> None:
        # Checked before anything connects: the local broker never listens off this machine.
        if self.host not in {"127.0.0.1", "localhost", "::1"} and not os.environ.get(
            "SWINGDIAL_ALLOW_PUBLIC_BIND"
        ):
            raise BrokerError(
                f"refusing to run the local broker on {self.host}; it listens on loopback only "
                "(for your own cluster set SWINGDIAL_KAFKA_BOOTSTRAP and skip `broker start`)"
            )

    def start(self, wait_s: float = 90.0) -> int:
        """Start the broker in the background (idempotent) and wait until it answers."""
        self._check_loopback()
        existing = self.pid()
        if existing and self.listening():
            return existing
        if self.listening():
            raise BrokerError(
                f"something else listens on {self.host}:{self.port}; set SWINGDIAL_KAFKA_BOOTSTRAP "
                "to use it, or free the port"
            )
        self.paths.root.mkdir(parents=True, exist_ok=True)
        classpath = resolve_classpath(self.paths)
        self._write_properties()
        self._format_storage(classpath)
        cmd = self._java(
            classpath, "kafka.Kafka", str(self.paths.properties), heap=self.settings.kafka_heap
        )
        with open(self.paths.log, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it
            )
        self.paths.pid.write_text(str(proc.pid))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {proc.returncode}; see {self.paths.log}:\n"
                    + _tail(self.paths.log)
                )
            if self.listening():
                return proc.pid
            time.sleep(0.3)
        raise BrokerError(f"the broker did not listen within {wait_s:.0f}s; see {self.paths.log}")

    def stop(self, wait_s: float = 60.0) -> bool:
        """Controlled shutdown (SIGTERM), SIGKILL only if it hangs. Returns False if not running."""
        pid = self.pid()
        if pid is None:
            self.paths.pid.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.pid() is None or _zombie(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.paths.pid.unlink(missing_ok=True)
        return True


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


def prefetch() -> None:
    """Resolve the broker's jars now (setup step), so the first start is quick."""
    from stream.config import get_settings

    resolve_classpath(BrokerPaths(get_settings().kafka_dir))
