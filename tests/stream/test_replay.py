"""Replay without a broker: which posts, in which order, at which times (Kafka part in
tests/stream/test_sink_kafka.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from stream.sink import Sink
from stream.sources.replay import (
    archived_posts,
    as_replay,
    replay_records,
    replay_run,
    replay_run_id,
    schedule,
)
from tests.factories import START, make_settings, records, scored_post


@pytest.fixture
def archive(tmp_path: Path):
    settings = make_settings(tmp_path)
    items = [scored_post(i, "orig") for i in range(30)]
    # Two posts at exactly the same event_time, delivered in reverse id order.
    tie_a = scored_post(100, "orig")
    tie_b = scored_post(101, "orig")
    same = START + timedelta(minutes=1, seconds=30)
    tie_a.post.event_time = same
    tie_b.post.event_time = same
    sink = Sink(settings)
    sink.process(records(items[::-1] + [tie_b, tie_a], settings))
    sink.process(records([scored_post(i, "other") for i in range(5)], settings, start_offset=99))
    sink.close()
    return settings


def test_archived_posts_in_event_time_order_ties_by_id(archive) -> None:
    posts = archived_posts(archive, "orig")
    assert len(posts) == 32
    keys = [(p.event_time, p.id) for p in posts]
    assert keys == sorted(keys)
    tie = [p.id for p in posts if p.event_time == START + timedelta(minutes=1, seconds=30)]
    assert tie == sorted(tie) and {"p00100", "p00101"} <= set(tie)
    assert all(p.run_id == "orig" for p in posts)
    # The archive is the validated post: text, author and truth survive unchanged.
    assert posts[0].truth is not None and posts[0].author.handle.startswith("user")


def test_unknown_run_is_a_clear_error(archive) -> None:
    with pytest.raises(LookupError, match="no archived posts"):
        archived_posts(archive, "missing")


def test_as_replay_marks_source_and_run(archive) -> None:
    posts = archived_posts(archive, "orig")
    replayed = as_replay(posts, "orig", "orig.r1")
    assert {p.run_id for p in replayed} == {"orig.r1"}
    assert {p.source for p in replayed} == {"replay:orig"}
    assert [p.id for p in replayed] == [p.id for p in posts]
    assert [p.event_time for p in replayed] == [p.event_time for p in posts]


def test_schedule_keeps_gaps_scaled_by_speed(archive) -> None:
    posts = archived_posts(archive, "orig")
    real = schedule(posts, 1.0)
    fast = schedule(posts, 10.0)
    assert real[0] == 0.0 and real == sorted(real)
    for r, f in zip(real, fast, strict=True):
        assert f == pytest.approx(r / 10)
    span = (posts[-1].event_time - posts[0].event_time).total_seconds()
    assert real[-1] == pytest.approx(span)
    with pytest.raises(ValueError):
        schedule(posts, 0)


def test_replay_run_id_is_new_and_tagged() -> None:
    new = replay_run_id("trump-musk-2024", "hf-roberta")
    assert new.startswith("trump-musk-2024-replay-hf-roberta-")
    assert new != replay_run_id("trump-musk-2024", "hf-roberta")  # unique per call


def test_replay_records_carry_the_scaled_gaps(archive) -> None:
    posts = archived_posts(archive, "orig")
    paced = replay_records(posts, 4.0, as_fast_as_possible=False)
    assert sum(r.delay_s for r in paced) == pytest.approx(schedule(posts, 4.0)[-1])
    assert all(r.delay_s >= 0 for r in paced)
    assert [r.key for r in paced] == [p.author.id.encode() for p in posts]
    assert all(r.delay_s == 0 for r in replay_records(posts, 4.0, as_fast_as_possible=True))


def test_replay_refuses_same_run_id(archive) -> None:
    with pytest.raises(ValueError, match="different"):
        replay_run(archive, "orig", new_run_id="orig")
