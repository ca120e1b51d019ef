"""Faults with real processes: a live stream keeps flowing while the broker, the sink or a
worker is stopped or killed, and while workers join and leave. Each test streams posts at
a steady rate, injects its fault mid-stream, and asserts that DuckDB ends with every valid
post exactly once (0 lost, 0 duplicated). Each prints its recovery time.

Slow (a minute or two each): behind the ``faults`` marker, not in the default run.
Run them with ``bash infra/run.sh faults`` (``pytest -m faults -s``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.broker import Broker
from stream import kafka
from stream.config import Settings
from stream.processes import spawn
from stream.query import QueryClient
from stream.schema import Post
from tests.conftest import wait_until
from tests.factories import make_posts

pytestmark = [pytest.mark.faults, pytest.mark.integration]

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


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[Settings, Broker]]:
    settings = own_broker_settings(tmp_path / "home")
    broker = Broker(settings)
    broker.start()
    try:
        kafka.wait_for_broker(settings)
        kafka.ensure_topics(settings)
        yield settings, broker
    finally:
        broker.stop()


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


# --------------------------------------------------------------------------- the faults


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_broker_down_mid_stream(own_broker, tmp_path: Path, how: str) -> None:
    settings, broker = own_broker

    def fault(_: Pipeline) -> float:
        if how == "stopped":
            broker.stop()
        else:
            broker.nodes[0].send_signal(signal.SIGKILL)
            wait_until(lambda: broker.pid() is None, 30, 0.2, "the broker to die")
        time.sleep(5)  # the stream goes on: the source backs up, the clients retry
        broker.start()
        return time.monotonic()

    run_fault(f"broker-{how}", settings, tmp_path / "logs", fault)


def test_sink_killed_mid_stream(kafka_settings: Settings, tmp_path: Path) -> None:
    def fault(pipeline: Pipeline) -> float:
        assert pipeline.sink is not None
        pipeline.kill(pipeline.sink)
        time.sleep(3)
        pipeline.start_sink()
        return time.monotonic()

    run_fault("sink-killed", kafka_settings, tmp_path / "logs", fault)


def test_worker_killed_mid_stream(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.replace(**{"worker_session_timeout_s": 10.0})

    def fault(pipeline: Pipeline) -> float:
        pipeline.kill(pipeline.workers[0])
        time.sleep(3)
        pipeline.start_worker()
        return time.monotonic()

    run_fault("worker-killed", settings, tmp_path / "logs", fault)


class PartitionProgress:
    """Samples the workers' committed offset and the end offset of each ``posts`` partition,
    to see how long any partition with waiting posts goes without a commit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.samples: list[tuple[float, dict[int, tuple[int, int]]]] = []
        self.errors: list[Exception] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-partitions")
        self._thread.start()

    def _run(self) -> None:
        from kafka import TopicPartition

        # Reads the group's committed offsets without joining it (never subscribes or polls).
        consumer = kafka.consumer(self.settings, group_id=self.settings.worker.app_id)
        topic = self.settings.topic.posts
        parts = [TopicPartition(topic, p) for p in range(self.settings.kafka.partitions)]
        try:
            while not self._stop.is_set():
                try:
                    ends = consumer.end_offsets(parts)
                    row = {tp.partition: (consumer.committed(tp) or 0, ends[tp]) for tp in parts}
                    self.samples.append((time.monotonic(), row))
                except Exception as exc:  # noqa: BLE001 - group coordinator moving
                    self.errors.append(exc)
                self._stop.wait(0.25)
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def longest_stall(self, since: float, until: float) -> float:
        """Longest time in [since, until] any partition had waiting posts but no new commit."""
        longest = 0.0
        for partition in range(self.settings.kafka.partitions):
            stalled_from: float | None = None
            last = -1
            for t, row in self.samples:
                committed, end = row[partition]
                if committed > last:
                    last = committed
                    if stalled_from is not None and t >= since:
                        longest = max(longest, t - max(stalled_from, since))
                    stalled_from = t if committed < end else None
                elif committed < end and stalled_from is None:
                    stalled_from = t
                if t > until:
                    break
        return longest


@pytest.mark.parametrize("membership", ["dynamic", "static"])
def test_worker_joins_and_leaves_mid_stream(
    kafka_settings: Settings, tmp_path: Path, membership: str
) -> None:
    """A second worker joins, then is stopped cleanly (SIGTERM). With dynamic membership
    (the default) it leaves the group at once, so its partitions move to the other worker
    without waiting for the session timeout; static membership (opt-in) holds them."""
    settings = kafka_settings.replace(**{"worker_session_timeout_s": 30.0})
    partitions = PartitionProgress(settings)
    moments: dict[str, float] = {}

    def start_worker(pipeline: Pipeline) -> subprocess.Popen:
        if membership == "static":  # one id per worker, as an operator would set it
            pipeline.settings = settings.replace(
                **{"worker_instance_id": f"worker-{len(pipeline.workers)}"}
            )
        return pipeline.start_worker()

    def fault(pipeline: Pipeline) -> float:
        moments["join"] = time.monotonic()
        second = start_worker(pipeline)
        time.sleep(12)  # both workers share the partitions for a while
        moments["leave"] = time.monotonic()
        assert pipeline.terminate(second) == 0
        return moments["leave"]

    try:
        if membership == "static":
            settings = settings.replace(**{"worker_instance_id": "worker-0"})
        run_fault(f"worker-join-leave-{membership}", settings, tmp_path / "logs", fault, posts=3000)
    finally:
        partitions.stop()
    assert len(partitions.samples) > 100, partitions.errors[-3:]
    join_stall = partitions.longest_stall(moments["join"], moments["leave"])
    leave_stall = partitions.longest_stall(moments["leave"], time.monotonic())
    print(
        f"[fault] worker join/leave ({membership} membership, session timeout "
        f"{settings.worker.session_timeout_s:.0f} s): longest partition stall after the join "
        f"{join_stall:.1f} s, after the leave {leave_stall:.1f} s"
    )
    if membership == "dynamic":
        assert leave_stall < settings.worker.session_timeout_s, (
            "a cleanly stopped worker's partitions waited for the session timeout"
        )
