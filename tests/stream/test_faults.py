"""Faults with real processes: a live stream keeps flowing while the broker, the sink or a
worker is stopped or killed, and while workers join and leave. Each test streams posts at
a steady rate, injects its fault mid-stream, and asserts that DuckDB ends with every valid
post exactly once (0 lost, 0 duplicated). Each prints its recovery time.

Slow (a minute or two each): behind the ``faults`` marker, not in the default run.
Run them with ``bash infra/run.sh faults`` (``pytest -m faults -s``).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.broker import Broker
from stream import kafka
from stream.config import Settings
from tests.conftest import wait_until
from tests.harness import Pipeline, own_broker_settings, run_fault

pytestmark = [pytest.mark.faults, pytest.mark.integration]


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
