"""Shared fixtures. Integration tests run against a real Apache Kafka broker that this
session starts (resolved by infra/pom.xml) on free loopback ports, and real DuckDB files."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.config import Settings
from stream.processes import free_port, isolated, running_broker, spawn

# Tests score with the packaged model, never with one promoted into the developer's
# $SWINGDIAL_HOME/models (an empty model directory resolves to the packaged default).
if "SWINGDIAL_MODEL_DIR" not in os.environ:
    os.environ["SWINGDIAL_MODEL_DIR"] = tempfile.mkdtemp(prefix="swingdial-models-")
    atexit.register(shutil.rmtree, os.environ["SWINGDIAL_MODEL_DIR"], ignore_errors=True)

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def private_broker_settings(home: Path, partitions: int, heap: str = "512m") -> Settings:
    """Settings for a broker of the test's own, on free loopback ports (beside any demo)."""
    return Settings(
        home=home,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        kafka_heap=heap,
        kafka_partitions=partitions,
    )


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A real single-node KRaft broker for the whole test session."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("Java and Maven are needed to run the Kafka broker")
    settings = private_broker_settings(tmp_path_factory.mktemp("broker-home"), partitions=3)
    with running_broker(settings):
        yield settings


@pytest.fixture
def kafka_settings(kafka_broker: Settings, tmp_path: Path) -> Settings:
    """Settings on the session broker with this test's own topics, group ids and home."""
    from stream import kafka

    settings = isolated(kafka_broker, uuid.uuid4().hex[:8], tmp_path / "home")
    settings.home.mkdir(parents=True, exist_ok=True)
    kafka.ensure_topics(settings)
    return settings


# Integration tests start the real commands exactly as the demo does.
swingdial_process = spawn


def wait_until(predicate, timeout_s: float, interval_s: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def hold_database(path: Path, seconds: float, read_only: bool) -> subprocess.Popen:
    """Another process with the DuckDB file open (read-only: a reader's one-query open;
    writable: a writer such as a starting sink) for ``seconds``; returns once it is open."""
    code = (
        "import duckdb, time\n"
        f"con = duckdb.connect({str(path)!r}, read_only={read_only})\n"
        "print('open', flush=True)\n"
        f"time.sleep({seconds})\n"
        "con.close()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc
