"""The worker's pure parts: the scored record and the cohort call from bio + history."""

from __future__ import annotations

from datetime import UTC, datetime

from models.cohort import CohortHistory
from stream.batch import build_scored, cohort_call
from stream.schema import Author, Post, ScoredPost


def post(bio: str, text: str = "text") -> Post:
    return Post(
        id="p",
        run_id="r",
        event_id="e",
        event_time=datetime(2024, 8, 13, tzinfo=UTC),
        author=Author(id="a", handle="h", bio=bio),
        text=text,
    )


def output(trump: str) -> dict:
    probs = {"favor": 0.05, "against": 0.05, "none": 0.05}
    probs[trump] = 0.9
    return {
        "sentiment": {
            "label": "neutral",
            "scores": {"negative": 0.1, "neutral": 0.8, "positive": 0.1},
        },
        "stance": {
            "Donald Trump": {"label": trump, "scores": probs},
            "Kamala Harris": {"label": "none", "scores": {"favor": 0, "against": 0, "none": 1}},
        },
    }


def test_history_places_an_author_with_a_silent_bio_only_after_enough_posts():
    stored, calls = None, []
    for offset in range(4):
        call, stored = cohort_call(post(""), output("favor"), stored, 0, offset, min_posts=3)
        calls.append(call)
    assert calls[0].label == "unplaced"  # no evidence yet: not placed, not "moderate"
    assert calls[-1].label == "lean_right"
    assert any("history" in e for e in calls[-1].evidence)
    assert stored["offset"] == 3 and stored["stance_posts"] == 4


def test_a_post_re_scored_after_a_crash_is_not_counted_twice():
    _, stored = cohort_call(post(""), output("favor"), None, 0, 10, min_posts=3)
    _, stored = cohort_call(post(""), output("favor"), stored, 0, 11, min_posts=3)
    # The worker died before acking offsets 10-11; after recovery they arrive again.
    for offset in (10, 11):
        call, value = cohort_call(post(""), output("favor"), stored, 0, offset, min_posts=3)
        assert value is None  # nothing to write: already in the history
        assert "history: 2/2 posts with stance" in " ".join(call.evidence)
    _, stored = cohort_call(post(""), output("against"), stored, 0, 12, min_posts=3)
    assert stored["posts"] == 3 and stored["offset"] == 12


def test_bio_wins_for_partisans_and_history_survives_a_round_trip():
    call, stored = cohort_call(
        post("Progressive. Resist."), output("favor"), None, 0, 0, min_posts=3
    )
    assert call.label == "lean_left"
    assert any(e.startswith("bio:") for e in call.evidence)
    restored = CohortHistory.from_dict(stored)
    assert restored.to_dict() | {"partition": 0, "offset": 0} == stored


def test_scored_record_round_trips_with_model_version():
    p = post("Independent", "hello")
    cohort, _ = cohort_call(p, output("none"), None, 0, 0, min_posts=3)
    record = build_scored(p, output("none"), "v1", None, cohort)
    again = ScoredPost.model_validate_json(record.to_bytes())
    assert again.model_version == "v1"
    assert again.cohort.label == "moderate"
    assert again.stance["Donald Trump"].label == "none"


def test_each_post_is_scored_against_its_own_events_topics():
    from models.scorer import DEFAULT_TOPICS, load_scorer
    from stream.config import Settings
    from stream.events import load_event
    from stream.worker import EventAwareScorer

    scorer = EventAwareScorer(load_scorer(Settings(), targets=["Donald Trump"]))
    live = post("", "The Space keeps crashing, nobody can join").model_copy(
        update={"event_id": "trump-musk-2024"}
    )
    other = post("", "Prices at the grocery store are out of control").model_copy(
        update={"event_id": "no-such-event"}
    )
    out_live, out_other = scorer.score_posts([live, other])
    event_ids = {topic.id for topic in load_event("trump-musk-2024").topics}
    assert set(out_live["topic"]["scores"]) == event_ids
    assert set(out_other["topic"]["scores"]) == {topic_id for topic_id, _ in DEFAULT_TOPICS}
    assert out_live["topic"]["label"] == "tech_outage"


def test_author_histories_beyond_the_limit_are_dropped_least_recent_first():
    from stream.batch import evictions

    history = {f"k{i}": {"posts": 1, "partition": i % 3} for i in range(10)}
    history["k0"] = history.pop("k0")  # seen again: now the most recent
    dropped = evictions(history, limit=7)
    assert dropped == [("k1", 1), ("k2", 2), ("k3", 0)]
    assert list(history) == ["k4", "k5", "k6", "k7", "k8", "k9", "k0"]
    assert evictions(history, limit=7) == []
