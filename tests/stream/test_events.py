"""The event file is the simulator's script and the charts' timeline: it must load and agree
with itself (topics referenced exist, moments in order, script valid)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream.events import available_events, load_event
from stream.sources.simulator import parse_group, simulation_spec, validate_event_script

REQUIRED_TOPICS = {
    "tech_outage",
    "interview_format",
    "economy",
    "crime",
    "border",
    "justice_system",
    "foreign_policy",
    "harris_attacks",
    "musk_endorsement",
    "harris_campaign_response",
    "other",
}


@pytest.fixture(scope="module")
def event():
    return load_event("trump-musk-2024")


def test_event_is_listed_and_loads(event):
    assert "trump-musk-2024" in available_events()
    assert event.id == "trump-musk-2024"
    assert event.start == datetime(2024, 8, 13, 0, 0, tzinfo=UTC)
    assert 150 <= event.duration_min <= 180
    assert event.targets == ["Donald Trump", "Kamala Harris", "Elon Musk"]


def test_topics_cover_the_event_and_have_keywords(event):
    ids = event.topic_ids()
    assert set(ids) >= REQUIRED_TOPICS
    assert len(ids) == len(set(ids))
    for topic in event.topics:
        assert topic.label and topic.description
        assert topic.keywords or topic.id == "other"


def test_every_moment_topic_exists(event):
    topics = set(event.topic_ids())
    for moment in event.moments:
        assert moment.topic in topics, moment.id


def test_moments_are_ordered_unique_and_scripted(event):
    ids = [m.id for m in event.moments]
    assert len(ids) == len(set(ids))
    starts = [m.at_min for m in event.moments]
    assert starts == sorted(starts)
    for moment in event.moments:
        assert moment.script.get("cohorts"), moment.id
        if moment.until_min is not None:
            assert moment.until_min > moment.at_min


def test_timeline_follows_the_public_record(event):
    by_id = {m.id: m for m in event.moments}
    outage = [m for m in event.moments if m.topic == "tech_outage" and m.at_min < 40]
    assert outage and outage[0].at_min == 0
    assert max(event.moment_end(m) for m in outage) == pytest.approx(40, abs=3)
    assert by_id["space_starts"].at_min == pytest.approx(42, abs=3)
    assert by_id["harris_campaign_response"].at_min > event.duration_min
    assert by_id["musk_offer"].at_min > by_id["harris_campaign_response"].at_min


def test_active_moment_and_moment_end(event):
    assert event.active_moment(5).id == "launch_failure"
    assert event.active_moment(20).id == "ddos_claim"
    assert event.active_moment(41) is None  # between the outage and the start
    assert event.active_moment(60).id == "crime"
    last = event.moments[-1]
    assert event.moment_end(last) == float("inf")
    assert event.active_moment(10_000).id == last.id


def test_simulation_script_is_valid(event):
    assert validate_event_script(event) == []
    spec = simulation_spec(event)
    assert sum(c.share for c in spec.cohorts.values()) == pytest.approx(1.0)
    assert set(spec.cohorts) == {"moderate", "lean_left", "lean_right", "media", "spam"}
    assert spec.rate_curve[-1][0] > event.duration_min  # a tail after the end


def test_validation_reports_broken_scripts(event):
    broken = event.model_copy(deep=True)
    broken.moments[0].topic = "no_such_topic"
    broken.moments[1].script["cohorts"]["moderate"]["phrases"] = {"pos X+": ["hi {nope}"]}
    problems = validate_event_script(broken)
    assert any("no_such_topic" in p for p in problems)
    assert any("bad stance" in p for p in problems)
    assert any("nope" in p for p in problems)


def test_parse_group():
    codes = {"T": "Donald Trump", "H": "Kamala Harris"}
    assert parse_group("pos T+ H-", codes) == (
        "positive",
        {"Donald Trump": "favor", "Kamala Harris": "against"},
    )
    assert parse_group("neu", codes) == (
        "neutral",
        {"Donald Trump": "none", "Kamala Harris": "none"},
    )
    with pytest.raises(ValueError):
        parse_group("great T+", codes)
