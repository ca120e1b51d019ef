"""A real 3-broker KRaft cluster on loopback: `swingdial broker start --nodes 3`, topics
replicated three ways with min.insync.replicas=2, and one broker killed mid-stream without
losing a post. The layout and replication defaults are checked without a broker."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from infra.broker import Broker, BrokerError, cluster_layout
from stream import kafka
from stream.config import Settings
from tests.conftest import wait_until
from tests.factories import cli
from tests.harness import Pipeline, own_broker_settings, run_fault


def test_layout_ports_and_dirs(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, kafka_bootstrap="127.0.0.1:9092", kafka_controller_port=9093, kafka_nodes=3
    )
    specs = cluster_layout(settings)
    assert [(s.node_id, s.port, s.controller_port) for s in specs] == [
        (1, 9092, 9093),
        (2, 9094, 9095),
        (3, 9096, 9097),
    ]
    assert [s.root for s in specs] == [tmp_path / "kafka" / f"node-{i}" for i in (1, 2, 3)]
    assert settings.kafka.bootstrap_servers() == [
        "127.0.0.1:9092",
        "127.0.0.1:9094",
        "127.0.0.1:9096",
    ]
    assert settings.kafka.client_config()["bootstrap_servers"] == settings.kafka.bootstrap_servers()
    # One node keeps the single broker's data where it always was.
    assert cluster_layout(settings, nodes=1)[0].root == tmp_path / "kafka"
    listed = settings.replace(**{"kafka_bootstrap": "127.0.0.1:1,127.0.0.1:2"})
    with pytest.raises(BrokerError, match="2 addresses for 3 nodes"):
        cluster_layout(listed)
    clash = settings.replace(**{"kafka_controller_port": 9094})
    with pytest.raises(BrokerError, match="overlap"):
        cluster_layout(clash)


@pytest.mark.parametrize(
    ("nodes", "rf", "isr"),
    [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)],
)
def test_replication_defaults_follow_the_cluster(nodes: int, rf: int, isr: int) -> None:
    settings = Settings(kafka_nodes=nodes)
    assert (settings.kafka.replicas, settings.kafka.min_insync) == (rf, isr)
    explicit = Settings(kafka_nodes=3, kafka_replication_factor=2, kafka_min_insync_replicas=2)
    assert (explicit.kafka.replicas, explicit.kafka.min_insync) == (2, 2)


def _described(settings: Settings, topic: str) -> tuple[list[list[int]], str]:
    """The topic's replica sets and its min.insync.replicas (as the brokers report them)."""
    admin = kafka.admin(settings)
    try:
        parts = admin.describe_topics([topic])[0]["partitions"]
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    min_isr = configs["topic"][topic]["min.insync.replicas"]["value"]
    return [sorted(p["replica_nodes"]) for p in parts], min_isr


@pytest.mark.faults
@pytest.mark.integration
def test_broker_start_nodes_3_runs_a_replicated_cluster(tmp_path: Path) -> None:
    settings = own_broker_settings(tmp_path / "home", nodes=3, partitions=2)
    one_node = settings.replace(**{"kafka_nodes": 1})
    try:
        started = cli(one_node, "broker", "start", "--nodes", "3")
        assert started.returncode == 0, started.stderr
        assert "cluster of 3 brokers" in started.stdout
        assert "replication factor 3, min.insync.replicas 2" in started.stdout
        assert "export SWINGDIAL_KAFKA_NODES=3" in started.stdout
        assert all((settings.kafka_dir / f"node-{i}" / "data").is_dir() for i in (1, 2, 3))
        status = cli(settings, "broker", "status")
        assert status.returncode == 0 and status.stdout.count("listening=True") == 3
        for topic in kafka.all_topics(settings):
            replicas, min_isr = _described(settings, topic)
            assert replicas == [[1, 2, 3]] * 2 and min_isr == "2"
    finally:
        stopped = cli(one_node, "broker", "stop")  # stops every node of the home
    assert "broker stopped" in stopped.stdout
    assert Broker(settings).pids() == [None, None, None]


@pytest.mark.faults
@pytest.mark.integration
def test_one_broker_of_three_killed_mid_stream(tmp_path: Path) -> None:
    settings = own_broker_settings(tmp_path / "home", nodes=3)
    broker = Broker(settings)
    broker.start()
    try:
        kafka.wait_for_broker(settings, brokers=3)
        kafka.ensure_topics(settings)
        victim = broker.nodes[1]

        def fault(_: Pipeline) -> float:
            victim.send_signal(signal.SIGKILL)
            wait_until(lambda: victim.pid() is None, 30, 0.2, "the broker to die")
            return time.monotonic()  # nothing is restarted: two brokers carry on

        run_fault("cluster-broker-killed", settings, tmp_path / "logs", fault)
        # The changelog was created three-way replicated too.
        admin = kafka.admin(settings)
        changelog = [t for t in admin.list_topics() if "author-history-changelog" in t]
        admin.close()
        assert changelog
        replicas, min_isr = _described(settings, changelog[0])
        assert all(len(r) == 3 for r in replicas) and min_isr == "2"
    finally:
        broker.stop()
