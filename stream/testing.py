"""Helpers for testing pipelines without a broker or a model (in the spirit of bytewax's
``testing`` module): a deterministic stand-in scorer and the poison-record corpus that the
worker must survive. Used by unit tests, the fault suite and the benchmarks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from stream.batch import RECORD_OVERHEAD_BYTES
from stream.schema import Author, Post

LABELS = {
    "sentiment": ("negative", "neutral", "positive"),
    "stance": ("favor", "against", "none"),
}


def fake_output(text: str, targets: Sequence[str] = ("Donald Trump",)) -> dict[str, Any]:
    """A model output of the real shape whose labels depend only on the text."""
    pick = sum(text.encode()) % 3

    def scores(labels: Sequence[str]) -> dict[str, Any]:
        probs = {label: (0.8 if i == pick else 0.1) for i, label in enumerate(labels)}
        return {"label": labels[pick], "scores": probs}

    return {
        "sentiment": scores(LABELS["sentiment"]),
        "stance": {target: scores(LABELS["stance"]) for target in targets},
    }


class FakeScorer:
    """Scores posts by :func:`fake_output`; raises on texts containing ``fail_on``."""

    version = "fake-model"

    def __init__(self, fail_on: str | None = None, broken: bool = False) -> None:
        self.fail_on = fail_on
        self.broken = broken
        self.calls = 0

    def __call__(self, posts: list[Post]) -> list[dict[str, Any]]:
        self.calls += 1
        if self.broken:
            raise RuntimeError("model unavailable")
        if self.fail_on and any(self.fail_on in p.text for p in posts):
            raise ValueError(f"cannot score a text with {self.fail_on!r}")
        return [fake_output(p.text) for p in posts]


class StubModel:
    """Stands in for ``models.scorer.Scorer`` (same calls, fixed-shape outputs, no encoder):
    the worker uses it with ``SWINGDIAL_SCORE_STUB=true`` so a benchmark measures
    everything around the model (Kafka, parsing, history, sends, the sink)."""

    version = "stub-model"

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = list(targets)

    def set_topics(self, topics: Sequence[tuple[str, str]]) -> None:
        self.topic_ids = [topic_id for topic_id, _ in topics]

    def score_texts(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        return [fake_output(text, self.targets) for text in texts]


def valid_post(i: int, run_id: str = "run-t", event_id: str = "trump-musk-2024", **kw: Any) -> Post:
    fields: dict[str, Any] = {
        "id": f"{run_id}-{i}",
        "run_id": run_id,
        "event_id": event_id,
        "event_time": datetime(2024, 8, 13, tzinfo=UTC) + timedelta(seconds=10 * i),
        "author": Author(id=f"a{i % 17}", handle=f"user{i % 17}", bio="Independent"),
        "text": f"Listening to the Space, post number {i}",
        "source": "test",
    }
    fields.update(kw)
    return Post(**fields)


def _post_dict(**changes: Any) -> dict[str, Any]:
    data = json.loads(valid_post(0, run_id="poison").to_bytes())
    data.update(changes)
    return data


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def poison_corpus(max_bytes: int = 1_000_000) -> dict[str, bytes | None]:
    """Records a hostile or broken producer can send, by name. None is a tombstone.

    Each must be dead-lettered with a reason, and cost no other record anything.
    """
    over_limit = json.dumps(_post_dict(id="p-huge", text="x" * (max_bytes + 100))).encode()
    # Sendable (under the producer's limit) but its scores record, which adds the model's
    # outputs to the post, is not.
    base = len(json.dumps(_post_dict(id="p-big-truth", truth={"blob": ""})))
    blob = "y" * (max_bytes - RECORD_OVERHEAD_BYTES - base - 100)
    big_truth = _post_dict(id="p-big-truth", truth={"blob": blob})
    return {
        "not json": b"{this is not json",
        "invalid utf-8": b"\xff\xfe\xfa not utf-8",
        "empty value": b"",
        "tombstone": None,
        "json array": b"[1, 2, 3]",
        "json string": b'"a post?"',
        "missing fields": json.dumps({"id": "x1", "text": "no other fields"}).encode(),
        "negative followers": json.dumps(
            _post_dict(id="p-neg", author={"id": "a", "handle": "h", "followers": -5})
        ).encode(),
        "event id is a path": json.dumps(
            _post_dict(id="p-path", event_id="/etc/ld.so.conf")
        ).encode(),
        "event id climbs": json.dumps(
            _post_dict(id="p-dots", event_id="../../etc/passwd")
        ).encode(),
        "nested 100,000 deep": _nested(100_000),
        "truth nested 5,000 deep": b'{"id": "p-deep", "truth": ' + _nested(5_000) + b"}",
        "4,301-digit integer": b'{"id": "p-int", "followers": 1' + b"1" * 4300 + b"}",
        "lone surrogate": json.dumps(_post_dict(id="p-sur", text="bad \ud800 text")).encode(),
        "just over the size limit": over_limit,
        "scores record too large": json.dumps(big_truth).encode(),
        "blank text": json.dumps(_post_dict(id="p-blank", text="   ")).encode(),
        "year 1900": json.dumps(_post_dict(id="p-old", event_time="1900-01-01T00:00:00Z")).encode(),
    }
