"""The whole pipeline on a real broker and a real DuckDB file:
simulator -> Kafka -> faust worker -> scores -> sink -> DuckDB, read while the sink writes."""

from __future__ import annotations

import signal

import pytest

from stream import kafka
from stream.config import Settings
from stream.events import load_event
from stream.query import QueryClient
from stream.sources.producer import send_records
from stream.sources.simulator import simulate
from tests.conftest import swingdial_process, wait_until

pytestmark = pytest.mark.integration


def count(client: QueryClient, sql: str) -> int:
    return client.sql(sql).column(0)[0].as_py()


def test_simulated_event_lands_exactly_once(kafka_settings: Settings, tmp_path):
    settings = kafka_settings
    event = load_event("trump-musk-2024")
    records = list(simulate(event, run_id="e2e-run", seed=11, speed=0, max_posts=400))
    valid_ids = {r.post.id for r in records if r.post is not None}
    malformed = {r.raw for r in records if r.post is None}
    assert malformed, "the simulator should emit some malformed records"
    assert len(valid_ids) < sum(r.post is not None for r in records), "expected duplicate ids"

    send_records(settings, records, realtime=False)
    sink = swingdial_process(settings, "sink", log_path=tmp_path / "sink.log")
    worker = swingdial_process(settings, "worker", log_path=tmp_path / "worker.log")
    client = QueryClient(settings)
    try:
        wait_until(
            lambda: _safe_count(client, "SELECT count(*) FROM scores") >= len(valid_ids),
            300,
            2,
            "every valid post in DuckDB",
        )
        # Read while the sink is still the writer: through its query server.
        assert client.server_info(refresh=True) is not None
        ids = {row["post_id"] for row in client.sql("SELECT post_id FROM posts").to_pylist()}
        assert ids == valid_ids
        assert count(client, "SELECT count(*) FROM posts") == len(valid_ids)
        assert count(client, "SELECT count(*) FROM scores") == len(valid_ids)
        targets = len(settings.targets)
        assert count(client, "SELECT count(*) FROM stances") == len(valid_ids) * targets
        assert count(client, "SELECT count(DISTINCT model_version) FROM scores") == 1
        assert count(client, "SELECT count(*) FROM moments WHERE event_id='trump-musk-2024'") > 5
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(60) == 0

    # After the sink stopped, the same client reads the file directly.
    assert count(client, "SELECT count(*) FROM posts") == len(valid_ids)
    dlq = kafka.consumer(settings, settings.topic.dlq, consumer_timeout_ms=3000)
    dead = list(dlq)
    dlq.close()
    assert {r.value for r in dead} == malformed
    assert all(dict(r.headers)["reason"] for r in dead)


def _safe_count(client: QueryClient, sql: str) -> int:
    try:
        return count(client, sql)
    except Exception:  # the sink may not have created the file or server yet
        return 0
