"""`swingdial broker`: a real KRaft broker on loopback that keeps its data across restarts."""

from __future__ import annotations

import subprocess

import pytest

from infra.broker import Broker, BrokerError
from stream import kafka
from stream.config import Settings
from tests.conftest import private_broker_settings
from tests.factories import cli

pytestmark = pytest.mark.integration


def test_start_status_stop_restart_keeps_messages(tmp_path):
    settings = private_broker_settings(tmp_path, partitions=2, heap="384m")
    stopped = cli(settings, "broker", "status")
    assert stopped.returncode == 1 and "listening: False" in stopped.stdout
    try:
        started = cli(settings, "broker", "start")
        assert started.returncode == 0, started.stderr
        assert "created topics: posts, scores, posts.dlq, annotations" in started.stdout
        assert cli(settings, "broker", "status").returncode == 0
        admin = kafka.admin(settings)
        described = admin.describe_topics([settings.topic.posts])
        admin.close()
        assert len(described[0]["partitions"]) == 2

        producer = kafka.producer(settings)
        producer.send(settings.topic.posts, key=b"k", value=b"kept across restarts")
        producer.flush()
        producer.close()

        assert "broker stopped" in cli(settings, "broker", "stop").stdout
        assert cli(settings, "broker", "status").returncode == 1
        again = cli(settings, "broker", "start")
        assert again.returncode == 0, again.stderr
        assert "created topics" not in again.stdout  # the topics survived

        consumer = kafka.consumer(settings, settings.topic.posts, consumer_timeout_ms=5000)
        values = [record.value for record in consumer]
        consumer.close()
        assert values == [b"kept across restarts"]
    finally:
        cli(settings, "broker", "stop")


def test_refuses_a_non_loopback_listener(tmp_path):
    settings = Settings(home=tmp_path, kafka_bootstrap="10.1.2.3:9092")
    with pytest.raises(BrokerError, match="loopback"):
        Broker(settings).start()


def test_listens_only_on_loopback(kafka_broker: Settings):
    host, port = kafka_broker.kafka.bootstrap.split(":")
    assert host == "127.0.0.1"
    listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
    lines = [line for line in listening.splitlines() if f":{port} " in line]
    assert lines and all("127.0.0.1" in line for line in lines)
