"""Starting swingdial commands as child processes configured by a :class:`Settings`.

The demo, the benchmark and the integration tests all run the real commands as separate
processes (as production would); this is the one place that knows how.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from infra.broker import Broker
from stream.config import Settings


def spawn(settings: Settings, *args: str, log_path: Path | None = None) -> subprocess.Popen:
    """Run ``swingdial ARGS`` in its own session (Ctrl-C reaches only the parent)."""
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    out: IO[bytes] | int = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if not isinstance(out, int):
            out.close()  # the child holds its own descriptor


def free_port() -> int:
    """A free TCP port on loopback (for tests and benchmarks that run beside a demo)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated(settings: Settings, tag: str, home: Path) -> Settings:
    """The same cluster with ``tag``'s own topics, consumer groups, home and free ports, so
    tests and benchmarks can share one broker without seeing each other's records."""
    return settings.replace(
        **{
            "home": home,
            "topic_posts": f"posts-{tag}",
            "topic_scores": f"scores-{tag}",
            "topic_dlq": f"posts.dlq-{tag}",
            "topic_annotations": f"annotations-{tag}",
            "worker_app_id": f"worker-{tag}",
            "sink_group": f"sink-{tag}",
            "worker_web_port": free_port(),
            "query_port": free_port(),
            "dashboard_port": free_port(),
        }
    )


@contextmanager
def running_broker(settings: Settings) -> Iterator[Settings]:
    """A local broker (or cluster) for the block: started, answering, then stopped."""
    from stream import kafka

    broker = Broker(settings)
    broker.start()
    try:
        kafka.wait_for_broker(settings)
        yield settings
    finally:
        broker.stop()
