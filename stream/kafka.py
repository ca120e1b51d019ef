"""Thin factories for kafka-python clients, so every process connects the same way."""

from __future__ import annotations

import contextlib
import logging
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream.config import Settings

log = logging.getLogger(__name__)


def producer(settings: Settings, **overrides: object) -> KafkaProducer:
    """A producer that waits for every write (acks=all) and never reorders on retry."""
    config: dict[str, object] = {
        **settings.kafka.client_config(),
        "acks": "all",
        "linger_ms": 20,
        "retries": 5,
        "max_in_flight_requests_per_connection": 1,
        "max_request_size": settings.kafka.max_message_bytes,
        "client_id": "swingdial-producer",
        **reconnect_config(settings),
    }
    config.update(overrides)
    return KafkaProducer(**config)


def reconnect_config(settings: Settings) -> dict[str, object]:
    """Backoff short enough that a client resumes within about a second of a broker
    coming back (kafka-python's default grows to 30 s between reconnects)."""
    return {
        "reconnect_backoff_ms": 50,
        "reconnect_backoff_max_ms": settings.kafka.reconnect_backoff_max_ms,
        "retry_backoff_ms": 200,
    }


def consumer(settings: Settings, *topics: str, **overrides: object) -> KafkaConsumer:
    config: dict[str, object] = {
        **settings.kafka.client_config(),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "client_id": "swingdial-consumer",
        **reconnect_config(settings),
    }
    config.update(overrides)
    return KafkaConsumer(*topics, **config)


def admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(**settings.kafka.client_config(), client_id="swingdial-admin")


def all_topics(settings: Settings) -> list[str]:
    return [
        settings.topic.posts,
        settings.topic.scores,
        settings.topic.dlq,
        settings.topic.annotations,
    ]


def topic_configs(settings: Settings) -> dict[str, str]:
    """Per-topic configs every project topic (and the worker's changelog) is created with."""
    return {"min.insync.replicas": str(settings.kafka.min_insync)}


def ensure_topics(settings: Settings, partitions: int | None = None) -> list[str]:
    """Create the project's topics if missing (replication factor and min.insync.replicas
    from the settings); returns the names that were created."""
    count = partitions or settings.kafka.partitions
    if settings.kafka.replicas > 1:  # a cluster just started: wait for its brokers
        wait_for_broker(settings, brokers=settings.kafka.replicas)
    client = admin(settings)
    try:
        existing = set(client.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=count,
                replication_factor=settings.kafka.replicas,
                topic_configs=topic_configs(settings),
            )
            for name in all_topics(settings)
            if name not in existing
        ]
        if not wanted:
            return []
        with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
            client.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        client.close()


def wait_for_broker(
    settings: Settings, timeout_s: float = 60.0, brokers: int | None = None
) -> None:
    """Block until the bootstrap servers answer a metadata request (and, with ``brokers``,
    until that many brokers have registered: topics with replication factor 3 need 3)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            client = admin(settings)
            try:
                client.list_topics()
                seen = len(client.describe_cluster()["brokers"]) if brokers else 0
            finally:
                client.close()
            if not brokers or seen >= brokers:
                return
            last = f"{seen} of {brokers} brokers registered"
        except (KafkaError, OSError) as exc:  # broker still starting
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"no Kafka broker answered at {settings.kafka.bootstrap}: {last}")
