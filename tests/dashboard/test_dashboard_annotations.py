"""An annotation typed in the dashboard travels Kafka -> sink -> DuckDB -> the chart markers.

Real broker (the session fixture in conftest), real sink code, real DuckDB file.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from dashboard import data, queries
from stream import kafka
from stream.config import Settings
from stream.schema import Annotation
from stream.sink import RawRecord, Sink

pytestmark = pytest.mark.integration

CONSUME_TIMEOUT_S = 30


def test_annotation_reaches_the_markers(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings.replace(**{"duckdb_path": tmp_path / "sink.duckdb"})
    at = datetime(2024, 8, 13, 0, 20, tzinfo=UTC)
    sent = data.produce_annotation(
        settings,
        text="Moderates sour on the outage",
        at=at,
        author="maria",
        run_id="live-test",
        event_id="trump-musk-2024",
    )

    consumer = kafka.consumer(settings, settings.topic.annotations, group_id="dash-test")
    records: list[RawRecord] = []
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    try:
        while not records and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records += [
                    RawRecord(m.topic, m.partition, m.offset, m.value, m.key) for m in batch
                ]
    finally:
        consumer.close()
    assert len(records) == 1
    assert Annotation.model_validate_json(records[0].value) == sent
    assert records[0].key == sent.id.encode()

    sink = Sink(settings)
    try:
        assert sink.process(records).annotations == 1
    finally:
        sink.close()
    con = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        marks = queries.markers(queries.from_connection(con), queries.Filters("live-test"))
    finally:
        con.close()
    note = marks[marks["kind"] == "annotation"].iloc[0]
    assert note["id"] == sent.id and note["label"] == "Moderates sour on the outage"
    assert note["author"] == "maria" and note["at_time"].to_pydatetime() == at
