"""Factories shared by the tests (real records, real DuckDB files, real posts).

tests/stream/test_store_helpers.py checks that they produce records the sink accepts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stream.config import Settings
from stream.schema import Annotation, Author, CohortCall, LabelScores, Post, ScoredPost
from stream.sink import RawRecord, Sink

START = datetime(2024, 8, 13, 0, 2, tzinfo=UTC)
COHORTS = ["moderate", "lean_left", "lean_right", "unknown"]
TARGETS = ["Donald Trump", "Kamala Harris"]


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "home": tmp_path / "home",
        "topic_scores": "scores",
        "topic_annotations": "annotations",
        "sink_group": "sink-test",
        "query_port": 1,  # nothing listens there: direct reads unless a test serves
    }
    values.update(overrides)
    return Settings(**values)


def scored_post(
    i: int,
    run_id: str = "run-a",
    event_id: str = "test-event",
    *,
    cohort: str | None = None,
    source: str = "simulator",
    minute_every: int = 7,
) -> ScoredPost:
    """A deterministic scored post; post i lands in minute i // minute_every."""
    pos = ((i * 37) % 100) / 100
    neg = round((1 - pos) * (((i * 13) % 10) / 10), 4)
    neu = round(1 - pos - neg, 4)
    label = max(("positive", pos), ("negative", neg), ("neutral", neu), key=lambda x: x[1])[0]
    call = cohort or COHORTS[i % len(COHORTS)]
    stance = {}
    for k, target in enumerate(TARGETS):
        favor = ((i + 3 * k) % 10) / 10
        against = round((1 - favor) / 2, 4)
        stance[target] = LabelScores(
            label="favor" if favor > 0.5 else "against",
            scores={"favor": favor, "against": against, "none": round(1 - favor - against, 4)},
        )
    return ScoredPost(
        post=Post(
            id=f"p{i:05d}",
            run_id=run_id,
            event_id=event_id,
            event_time=START + timedelta(seconds=i * 60 // minute_every, milliseconds=i),
            author=Author(id=f"a{i % 11}", handle=f"user{i % 11}", bio="bio", followers=i),
            text=f"post number {i} about the debate",
            source=source,
            truth={"cohort": call},
        ),
        sentiment=LabelScores(
            label=label, scores={"positive": pos, "negative": neg, "neutral": neu}
        ),
        stance=stance,
        emotion=LabelScores(label="joy", scores={"joy": 0.9}),
        topic=LabelScores(label="economy", scores={"economy": 0.7}),
        cohort=CohortCall(label=call, evidence=[f"bio says {call}"]),
        model_version="test-model-1",
        scored_at=START + timedelta(hours=1),
        received_at=datetime.now(UTC) - timedelta(milliseconds=50),
    )


def annotation(i: int, run_id: str | None = "run-a") -> Annotation:
    return Annotation(
        id=f"note-{i}",
        event_id="test-event",
        run_id=run_id,
        at=START + timedelta(minutes=i),
        text=f"note {i}",
        created_at=START,
    )


def records(
    items: list[ScoredPost | Annotation | bytes],
    settings: Settings,
    start_offset: int = 0,
    partition: int = 0,
) -> list[RawRecord]:
    """Number items as consecutive offsets on the topic they belong to."""
    out = []
    offsets: dict[str, int] = {}
    for item in items:
        topic = (
            settings.topic.annotations if isinstance(item, Annotation) else settings.topic.scores
        )
        value = item if isinstance(item, bytes) else item.model_dump_json().encode()
        offset = offsets.get(topic, start_offset)
        offsets[topic] = offset + 1
        out.append(RawRecord(topic, partition, offset, value))
    return out


def populated_db(settings: Settings, n: int = 120, runs: tuple[str, ...] = ("run-a",)) -> Path:
    """A database written by the real sink code path (no Kafka needed)."""
    sink = Sink(settings)
    try:
        for k, run_id in enumerate(runs):
            items: list = [scored_post(i, run_id) for i in range(n)]
            items += [annotation(j, run_id) for j in range(3)]
            items.append(b"{not json")
            sink.process(records(items, settings, start_offset=k * 1000))
        sink.process(dead_letter_records(settings))
    finally:
        sink.close()
    return settings.db_path


def dead_letter_records(settings: Settings, start_offset: int = 0) -> list[RawRecord]:
    """The poison corpus as the worker dead-letters it, arriving on the DLQ topic."""
    from stream.batch import InRecord, score_batch
    from stream.testing import FakeScorer, poison_corpus

    poison = [
        InRecord(settings.topic.posts, 0, i, b"k", value, 1723507200.0)
        for i, value in enumerate(poison_corpus(settings.kafka.max_message_bytes).values())
    ]
    out = score_batch(
        poison,
        FakeScorer(),
        {},
        version="v",
        min_posts=3,
        max_bytes=settings.kafka.max_message_bytes,
    )
    return [
        RawRecord(settings.topic.dlq, 0, start_offset + i, d.value, d.key, d.headers, 1723507200000)
        for i, d in enumerate(out.dead_letters)
    ]


TEXTS = [
    "Trump was great tonight, best interview ever",
    "This Space is a total disaster, can't even join",
    "Harris would never sit down for two hours like this",
    "Musk is just a billionaire shilling for Trump",
    "Still undecided after listening, both sides talk past us",
]


def make_posts(n: int, run_id: str) -> list[Post]:
    """``n`` valid posts by 17 authors with "Independent" bios, 10 s apart."""
    start = datetime(2024, 8, 13, tzinfo=UTC)
    return [
        Post(
            id=f"{run_id}-{i}",
            run_id=run_id,
            event_id="trump-musk-2024",
            event_time=start + timedelta(seconds=10 * i),
            author=Author(id=f"a{i % 17}", handle=f"user{i % 17}", bio="Independent", followers=i),
            text=f"{TEXTS[i % len(TEXTS)]} #{i}",
            source="test",
        )
        for i in range(n)
    ]


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    """Run ``swingdial ARGS`` as a user would, with ``settings`` in the environment."""
    env = {**os.environ, **settings.to_env()}
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
