"""The sink's write path against real DuckDB files (no broker: records are fed directly)."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest

from stream.config import Settings
from stream.sink import RawRecord, Sink
from stream.store import VIEWS, connect
from tests.conftest import hold_database
from tests.factories import annotation, make_settings, records, scored_post


def _open(settings: Settings, sink: Sink | None) -> duckdb.DuckDBPyConnection:
    # While this process holds the writer, read through a cursor of it (as the server does).
    return sink.store.con.cursor() if sink else connect(settings.db_path, read_only=True)


def _counts(settings: Settings, sink: Sink | None = None) -> dict[str, int]:
    con = _open(settings, sink)
    try:
        return {
            table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in (
                "posts",
                "scores",
                "stances",
                "authors",
                "runs",
                "annotations",
                "sink_rejects",
            )
        }
    finally:
        con.close()


def _query(settings: Settings, sql: str, sink: Sink | None = None) -> list[tuple]:
    con = _open(settings, sink)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def test_batch_written_exactly_once_with_offsets(settings: Settings) -> None:
    sink = Sink(settings)
    items = [scored_post(i) for i in range(50)] + [annotation(1)]
    result = sink.process(records(items, settings))
    sink.close()
    assert result.rows_written == 50 and result.duplicates == 0 and result.annotations == 1
    counts = _counts(settings)
    assert counts["posts"] == counts["scores"] == 50
    assert counts["stances"] == 100
    assert counts["authors"] == 11
    assert counts["runs"] == 1 and counts["annotations"] == 1
    assert sorted(_query(settings, "SELECT topic, partition, next_offset FROM kafka_offsets")) == [
        ("annotations", 0, 1),
        ("scores", 0, 50),
    ]
    assert _query(settings, "SELECT sum(posts_seen) FROM authors") == [(50,)]
    stats = _query(settings, "SELECT batches, records, rows_written, rejects FROM sink_stats")
    assert stats == [(1, 51, 50, 0)]


def test_redelivered_batch_adds_nothing(settings: Settings) -> None:
    items = [scored_post(i) for i in range(40)]
    sink = Sink(settings)
    sink.process(records(items, settings))
    before = _counts(settings, sink)
    # Same records at the same offsets (a restart that re-read them) ...
    again = sink.process(records(items, settings))
    # ... and at new offsets (the worker re-scored after a crash / the simulator re-sent).
    moved = sink.process(records(items + [scored_post(3)], settings, start_offset=500))
    sink.close()
    assert again.rows_written == 0 and again.duplicates == 40
    # 40 already stored + post 3 twice within the batch: every duplicate is counted
    assert moved.rows_written == 0 and moved.duplicates == 41
    assert _counts(settings) == before
    assert _query(settings, "SELECT sum(posts_seen) FROM authors") == [(40,)]
    assert _query(settings, "SELECT next_offset FROM kafka_offsets WHERE topic = 'scores'") == [
        (541,)
    ]


def test_crash_before_commit_stores_nothing_partial(settings: Settings) -> None:
    sink = Sink(settings)
    sink.process(records([scored_post(i) for i in range(10)], settings))
    before = _counts(settings, sink)
    offsets_before = sink.store.offsets()

    def crash() -> None:
        raise RuntimeError("simulated crash between building and committing")

    batch = records(
        [scored_post(i) for i in range(10, 30)] + [annotation(7), b"garbage"],
        settings,
        start_offset=10,
    )
    sink.store.before_commit = crash
    with pytest.raises(RuntimeError, match="simulated crash"):
        sink.process(batch)
    sink.close()
    assert _counts(settings) == before
    # A new process (fresh connection) sees the old offsets and re-reads the batch.
    restarted = Sink(settings)
    assert restarted.store.offsets() == offsets_before
    restarted.process(batch)
    restarted.close()
    counts = _counts(settings)
    assert counts["posts"] == 30 and counts["annotations"] == 1 and counts["sink_rejects"] == 1


def test_bad_records_are_rejected_and_counted(settings: Settings) -> None:
    good = scored_post(1)
    missing_field = good.model_dump(mode="json")
    del missing_field["sentiment"]
    import json

    values = [
        b"{not json",
        json.dumps(missing_field).encode(),
        b"[1, 2, 3]",
        None,
    ]
    raw = records([good], settings) + [
        RawRecord(settings.topic.scores, 1, i, v) for i, v in enumerate(values)
    ]
    raw.append(RawRecord(settings.topic.annotations, 0, 0, b'{"id": "x"}'))
    sink = Sink(settings)
    result = sink.process(raw)
    sink.close()
    assert result.rows_written == 1 and result.rejects == 5
    reasons = _query(settings, "SELECT partition, kafka_offset, reason FROM sink_rejects")
    assert len(reasons) == 5
    assert any("sentiment" in r[2] for r in reasons)
    assert any("tombstone" in r[2] for r in reasons)
    assert _query(settings, "SELECT rejects FROM sink_stats") == [(5,)]


def test_authors_keep_latest_cohort_by_event_time(settings: Settings) -> None:
    a = scored_post(77, cohort="lean_right")  # author a0, later than post 0
    b = scored_post(0, cohort="moderate")  # author a0
    sink = Sink(settings)
    sink.process(records([a], settings))
    sink.process(records([b], settings, start_offset=1))  # older post arrives later
    sink.close()
    rows = _query(settings, "SELECT cohort, posts_seen FROM authors WHERE author_id = 'a0'")
    assert rows == [("lean_right", 2)]


def test_replay_source_sets_replay_of(settings: Settings) -> None:
    sink = Sink(settings)
    sink.process(
        records(
            [scored_post(i, "run-a.replay-1", source="replay:run-a") for i in range(3)], settings
        )
    )
    sink.close()
    assert _query(settings, "SELECT run_id, replay_of FROM runs") == [("run-a.replay-1", "run-a")]


def test_moments_stored_when_event_file_exists(settings: Settings) -> None:
    from stream.events import available_events

    events = available_events()
    if not events:
        pytest.skip("no event files in stream/events yet")
    sink = Sink(settings)
    sink.process(records([scored_post(i, event_id=events[0]) for i in range(3)], settings))
    sink.process(records([scored_post(i, event_id="no-such-event") for i in range(3, 5)], settings))
    sink.close()
    (count,) = _query(settings, f"SELECT count(*) FROM moments WHERE event_id = '{events[0]}'")[0]
    assert count > 0
    assert _query(settings, "SELECT count(*) FROM moments WHERE event_id = 'no-such-event'") == [
        (0,)
    ]


def test_same_posts_under_two_runs_give_identical_minute_aggregates(settings: Settings) -> None:
    """Determinism of replay at the aggregation level: same ScoredPosts, two run ids."""
    sink = Sink(settings)
    first = [scored_post(i, "orig") for i in range(200)]
    second = [scored_post(i, "orig.replay", source="replay:orig") for i in range(200)]
    sink.process(records(first, settings))
    # Different batch boundaries and delivery order for the replay.
    shuffled = second[::-1]
    for k in range(0, 200, 37):
        sink.process(records(shuffled[k : k + 37], settings, start_offset=1000 + k))
    sink.close()
    cols = "minute, cohort, posts, round(net_sentiment, 6), round(stddev, 6), round(ci_low, 6)"
    a = _query(settings, f"SELECT {cols} FROM v_minute_cohort WHERE run_id='orig' ORDER BY ALL")
    b = _query(
        settings, f"SELECT {cols} FROM v_minute_cohort WHERE run_id='orig.replay' ORDER BY ALL"
    )
    assert a == b and len(a) > 10
    tcols = "minute, cohort, target, posts, round(net_stance, 6), favor_share, against_share"
    ta = _query(
        settings, f"SELECT {tcols} FROM v_minute_cohort_target WHERE run_id='orig' ORDER BY ALL"
    )
    tb = _query(
        settings,
        f"SELECT {tcols} FROM v_minute_cohort_target WHERE run_id='orig.replay' ORDER BY ALL",
    )
    assert ta == tb
    authors = "SELECT author_id, cohort, posts_seen FROM authors WHERE run_id = '{}' ORDER BY 1"
    assert _query(settings, authors.format("orig")) == _query(
        settings, authors.format("orig.replay")
    )


def test_offsets_survive_reopen_and_views_exist(settings: Settings) -> None:
    sink = Sink(settings)
    sink.process(records([scored_post(i) for i in range(5)], settings, partition=2))
    sink.close()
    again = Sink(settings)
    assert again.store.offsets() == {("scores", 2): 5}
    again.close()
    con = duckdb.connect(str(settings.db_path), read_only=True)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    con.close()
    assert set(VIEWS) <= views


def test_starting_sink_waits_out_a_readers_lock(settings: Settings) -> None:
    connect(settings.db_path).close()  # the file exists, as after an earlier run
    reader = hold_database(settings.db_path, 1.5, read_only=True)
    try:
        started = time.monotonic()
        sink = Sink(settings.replace(sink_lock_wait_s=30))
        waited = time.monotonic() - started
    finally:
        reader.wait(timeout=30)
    try:
        assert waited > 0.5  # it did meet the lock, and got the file once the reader closed
        sink.process(records([scored_post(1, "lock-run")], settings))
        assert _counts(settings, sink)["posts"] == 1
    finally:
        sink.store.close()


def test_sink_gives_up_on_a_lock_held_past_its_wait(settings: Settings) -> None:
    connect(settings.db_path).close()
    reader = hold_database(settings.db_path, 30, read_only=True)
    try:
        started = time.monotonic()
        with pytest.raises(duckdb.IOException, match="lock"):
            Sink(settings.replace(sink_lock_wait_s=0.5))
        assert time.monotonic() - started < 10
    finally:
        reader.kill()
        reader.wait()
