"""The fault suite's harness: a broker of its own, a paced source, the pipeline's
processes and the exactly-once check (shared by test_faults.py and test_cluster.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stream import kafka
from stream.config import Settings
from stream.processes import spawn
from stream.query import QueryClient
from stream.schema import Post
from tests.conftest import wait_until
from tests.factories import make_posts

POSTS = 2400  # ~30 s of stream at RATE: long enough to put a fault in the middle
RATE = 80.0  # posts/s, below the worker's ~200 posts/s so it keeps up between faults


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports (a cluster's listeners)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count >= 65535:
            continue
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no block of free ports")


def own_broker_settings(home: Path, nodes: int = 1, partitions: int = 3) -> Settings:
    """Settings for a broker (or cluster) of this test's own: it will be stopped or killed."""
    base = free_port_block(2 * nodes)
    return Settings(
        home=home,
        kafka_bootstrap=f"127.0.0.1:{base}",
        kafka_controller_port=base + 1,
        kafka_nodes=nodes,
        kafka_heap="384m",
        kafka_node_heap="384m",
        kafka_partitions=partitions,
        query_port=free_port_block(1),
        worker_web_port=free_port_block(1),
        worker_batch_size=32,
    )


class Source(threading.Thread):
    """Sends posts at ``rate`` per second, re-sending any Kafka did not acknowledge (a
    source's at-least-once; the sink keys on the post id, so a re-send is harmless)."""

    def __init__(self, settings: Settings, posts: list[Post], rate: float) -> None:
        super().__init__(daemon=True, name="fault-source")
        self.settings, self.posts, self.rate = settings, posts, rate
        self.sent = 0
        self.resent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = kafka.producer(self.settings, max_block_ms=120_000)
            started = time.monotonic()
            pending: list[Post] = []
            step = max(1, int(self.rate / 4))
            for start in range(0, len(self.posts), step):
                chunk = pending + self.posts[start : start + step]
                pending = self._send(producer, chunk)
                self.sent = start + step - len(pending)
                delay = started + (start + step) / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            while pending:
                time.sleep(0.5)
                pending = self._send(producer, pending)
            self.sent = len(self.posts)
            producer.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def _send(self, producer, posts: list[Post]) -> list[Post]:
        futures = [
            (
                post,
                producer.send(
                    self.settings.topic.posts, key=post.author.id.encode(), value=post.to_bytes()
                ),
            )
            for post in posts
        ]
        producer.flush(timeout=150)
        failed = [post for post, future in futures if not future.succeeded()]
        self.resent += len(failed)
        return failed


@dataclass
class Progress:
    """Samples how many posts DuckDB holds (through the sink's query server) twice a second."""

    settings: Settings
    samples: list[tuple[float, int | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-progress")
        self._thread.start()

    def _run(self) -> None:
        client = QueryClient(self.settings, mode="flight", timeout_s=2.0)
        while not self._stop.is_set():
            try:
                value: int | None = client.sql("SELECT count(*) FROM posts").column(0)[0].as_py()
            except Exception:  # noqa: BLE001 - the sink is down or still starting
                value = None
            self.samples.append((time.monotonic(), value))
            self._stop.wait(0.5)
        client.close()

    def stored(self) -> int:
        return max((v for _, v in self.samples if v is not None), default=0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def resumed_after(self, moment: float) -> float:
        """Seconds from ``moment`` until DuckDB held more posts than at any time before it."""
        before = max((v for t, v in self.samples if t <= moment and v is not None), default=0)
        for t, value in self.samples:
            if t > moment and value is not None and value > before:
                return t - moment
        return float("nan")

    def longest_stall(self, since: float, total: int) -> float:
        """The longest time after ``since`` (the fault) that DuckDB's count did not grow
        while posts were still missing."""
        last_t = since
        last_v = max((v for t, v in self.samples if t <= since and v is not None), default=0)
        longest = 0.0
        for t, value in self.samples:
            if t <= since or value is None or value <= last_v:
                continue
            longest = max(longest, t - last_t)
            last_t, last_v = t, value
            if value >= total:
                break
        return longest


class Pipeline:
    """A sink and workers as real `swingdial` processes, as the demo runs them."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings, self.logs = settings, logs
        self.workers: list[subprocess.Popen] = []
        self.sink: subprocess.Popen | None = None

    def start_sink(self) -> None:
        self.sink = spawn(self.settings, "sink", log_path=self.logs / "sink.log")

    def start_worker(self) -> subprocess.Popen:
        index = len(self.workers)
        proc = spawn(self.settings, "worker", log_path=self.logs / f"worker-{index}.log")
        self.workers.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)  # no clean shutdown, no final commit
        proc.wait(30)

    @staticmethod
    def terminate(proc: subprocess.Popen, timeout_s: float = 60) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                return proc.wait(30)
        return proc.returncode

    def stop(self) -> None:
        for proc in self.workers:
            self.terminate(proc)
        if self.sink is not None:
            self.terminate(self.sink)


def run_fault(
    name: str,
    settings: Settings,
    logs: Path,
    fault: Callable[[Pipeline], float],
    workers: int = 1,
    posts: int = POSTS,
    rate: float = RATE,
    fault_after: float = 0.35,
) -> dict[str, float]:
    """Stream ``posts`` through a sink and ``workers``; when ``fault_after`` of them are
    stored, call ``fault`` (it returns the moment recovery began); then check DuckDB holds
    each post exactly once and print the figures."""
    logs.mkdir(parents=True, exist_ok=True)
    batch = make_posts(posts, f"fault-{name}")
    pipeline = Pipeline(settings, logs)
    pipeline.start_sink()
    for _ in range(workers):
        pipeline.start_worker()
    progress = Progress(settings)
    source = Source(settings, batch, rate)
    try:
        source.start()  # the worker loads its model meanwhile; the posts wait in Kafka
        wait_until(
            lambda: progress.stored() >= posts * fault_after, 300, 0.5, "posts before the fault"
        )
        fault_at = time.monotonic()
        back_at = fault(pipeline)
        wait_until(lambda: progress.stored() >= posts, 600, 1, f"all {posts} posts stored")
        source.join(60)
        assert source.error is None, source.error
    finally:
        progress.stop()
        pipeline.stop()
    figures = {
        "stall_s": progress.longest_stall(fault_at, posts),
        "resumed_s": progress.resumed_after(back_at),
        "fault_to_recovery_s": back_at - fault_at,
    }
    check_exactly_once(settings, {p.id for p in batch})
    print(
        f"\n[fault] {name}: sent={posts} stored={posts} lost=0 duplicated=0 "
        f"re-sent by source={source.resent}; longest stall after the fault "
        f"{figures['stall_s']:.1f} s, "
        f"stored again {figures['resumed_s']:.1f} s after recovery began "
        f"({figures['fault_to_recovery_s']:.1f} s after the fault)"
    )
    return figures


def check_exactly_once(settings: Settings, ids: set[str]) -> None:
    """DuckDB (read directly; the sink has stopped) holds each post and score exactly once."""
    with QueryClient(settings, mode="direct") as client:
        stored = client.sql("SELECT post_id FROM posts").column(0).to_pylist()
        scored = client.sql("SELECT post_id FROM scores").column(0).to_pylist()
    assert len(stored) == len(set(stored)), "duplicated posts in DuckDB"
    assert len(scored) == len(set(scored)), "duplicated scores in DuckDB"
    assert set(stored) == ids, f"lost {len(ids - set(stored))} posts"
    assert set(scored) == ids
