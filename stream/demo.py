"""`swingdial demo`: broker, worker, sink, dashboard and simulator as one supervised group.

Each part runs as its own process (as it would in production), started in dependency order
and stopped in reverse order so nothing in flight is lost: the simulator stops producing,
the worker finishes its batch, the sink commits its last transaction, then the broker stops.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.broker import Broker
from stream import kafka
from stream.config import Settings
from stream.processes import spawn

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    args: list[str]
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None


@dataclass
class Supervisor:
    """Starts children with the demo's settings in their environment; stops them in reverse."""

    settings: Settings
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, *args: str) -> Child:
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        child = Child(name, list(args), log_path=logs / f"{name}.log")
        # Own session: Ctrl-C reaches only us, and we stop the children in order.
        child.process = spawn(self.settings, *args, log_path=child.log_path)
        self.children.append(child)
        log.info("started %s (pid %d), log %s", name, child.process.pid, child.log_path)
        return child

    def failed(self) -> list[Child]:
        """Children that exited with an error (a finished simulator is not a failure)."""
        return [
            c for c in self.children if c.process is not None and c.process.poll() not in (None, 0)
        ]

    def stop_all(self, timeout_s: float = 60.0) -> None:
        for child in reversed(self.children):
            proc = child.process
            if proc is None or proc.poll() is not None:
                continue
            log.info("stopping %s", child.name)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", child.name, timeout_s)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_demo(
    settings: Settings,
    event: str,
    speed: float,
    start_broker: bool,
    keep_broker: bool,
    open_dashboard: bool,
    simulate_args: list[str],
    echo=print,
) -> int:
    broker = Broker(settings) if start_broker else None
    if broker is not None:
        echo(f"starting Kafka on {settings.kafka.bootstrap} (first run resolves jars via Maven)")
        broker.start()
    kafka.wait_for_broker(settings)
    kafka.ensure_topics(settings)

    supervisor = Supervisor(settings)
    stop = {"now": False}

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        stop["now"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        supervisor.start("sink", "sink")
        supervisor.start("worker", "worker")
        if open_dashboard:
            supervisor.start("dashboard", "dashboard")
        supervisor.start(
            "simulator", "simulate", "--event", event, "--speed", str(speed), *simulate_args
        )
        url = f"http://{settings.dashboard.host}:{settings.dashboard.port}"
        echo(f"\nswingdial demo is running: dashboard {url}")
        echo(f"DuckDB: {settings.db_path}   logs: {settings.home / 'logs'}")
        echo("Ctrl-C stops everything cleanly.\n")
        while not stop["now"]:
            broken = [c for c in supervisor.failed() if c.name != "simulator"]
            if broken:
                for child in broken:
                    echo(f"{child.name} exited with {child.returncode}; see {child.log_path}")
                return 1
            time.sleep(0.5)
        return 0
    finally:
        echo("stopping: simulator, dashboard, worker, sink" + (", broker" if broker else ""))
        supervisor.stop_all()
        if broker is not None and not keep_broker:
            broker.stop()
        echo("stopped.")
