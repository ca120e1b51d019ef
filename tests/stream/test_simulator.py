"""The simulator is the demo's audience and the accuracy benchmark's ground truth: it must be
repeatable, follow the event's volume and cohort script, and mix in the dirt real feeds have."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict

import pytest
from click.testing import CliRunner

from stream.cli import main
from stream.events import load_event
from stream.schema import InvalidPost, parse_post
from stream.sources.simulator import simulate, simulation_spec

RUN = "trump-musk-2024-test-run"


@pytest.fixture(scope="module")
def event():
    return load_event("trump-musk-2024")


@pytest.fixture(scope="module")
def records(event):
    """One whole run (outage, conversation and tail) at 40% volume."""
    return list(simulate(event, RUN, seed=11, speed=60, rate_scale=0.4))


@pytest.fixture(scope="module")
def posts(records):
    return [r.post for r in records if r.post is not None and r.kind != "duplicate"]


def _minute(event, post) -> float:
    return (post.event_time - event.start).total_seconds() / 60


def test_same_seed_same_records_other_seed_differs(event):
    def values(seed: int) -> list[bytes]:
        return [r.value for r in simulate(event, RUN, seed=seed, max_posts=1500)]

    first = values(3)
    assert first == values(3)
    assert first != values(4)
    assert len(first) == 1500


def test_delays_are_event_gaps_divided_by_speed(event):
    fast = list(simulate(event, RUN, seed=1, speed=120, max_posts=400))
    times = [r.post.event_time for r in fast if r.post is not None]
    total_event_s = (times[-1] - event.start).total_seconds()
    assert sum(r.delay_s for r in fast) == pytest.approx(total_event_s / 120, rel=0.02)
    assert all(r.delay_s >= 0 for r in fast)
    assert all(r.delay_s == 0 for r in simulate(event, RUN, seed=1, speed=0, max_posts=200))


def test_event_times_are_ordered_and_inside_the_window(event):
    window = [r for r in simulate(event, RUN, seed=2, start_min=50, end_min=60) if r.post]
    minutes = [_minute(event, r.post) for r in window]
    assert minutes == sorted(minutes)
    assert min(minutes) >= 50 and max(minutes) < 60


def test_outage_spike_peaks_and_tail(event, posts):
    per_minute = Counter(int(_minute(event, p)) for p in posts)
    outage = statistics.mean(per_minute[m] for m in range(3, 38))
    wrap_up = statistics.mean(per_minute[m] for m in range(155, 165))
    tail = statistics.mean(per_minute[m] for m in range(215, 245))
    assert outage > 1.4 * wrap_up
    peak = statistics.mean(per_minute[m] for m in range(90, 96))  # ~2 million listeners
    crime = statistics.mean(per_minute[m] for m in range(52, 64))
    assert peak > 1.15 * crime
    assert 0 < tail < wrap_up / 2
    last = max(_minute(event, p) for p in posts)
    assert event.duration_min < last <= simulation_spec(event).end_min


def test_rate_scale_multiplies_volume(event):
    def count(scale: float) -> int:
        return sum(
            1 for _ in simulate(event, RUN, seed=5, start_min=60, end_min=70, rate_scale=scale)
        )

    assert count(3.0) / count(1.0) == pytest.approx(3.0, rel=0.15)


def test_cohort_shares_follow_the_mix(event, posts):
    shares = {c: spec.share for c, spec in simulation_spec(event).cohorts.items()}
    seen = Counter(p.truth["cohort"] for p in posts)
    for cohort, share in shares.items():
        assert seen[cohort] / len(posts) == pytest.approx(share, abs=0.04), cohort


def test_truth_is_complete_and_matches_the_moment(event, posts):
    topics = set(event.topic_ids())
    for post in posts:
        truth = post.truth
        assert post.source == "simulator" and post.run_id == RUN and post.event_id == event.id
        assert truth["sentiment"] in {"positive", "negative", "neutral"}
        assert set(truth["stance"]) == set(event.targets)
        assert set(truth["stance"].values()) <= {"favor", "against", "none"}
        assert truth["topic"] in topics
        moment = event.active_moment(_minute(event, post))
        assert truth["moment_id"] == (moment.id if moment else None)
        if post.repost_of is None and moment is not None:
            assert truth["topic"] in {moment.topic, "other"}


def _stance_shares(posts, cohort: str, target: str) -> dict[str, float]:
    labels = Counter(p.truth["stance"][target] for p in posts if p.truth["cohort"] == cohort)
    total = sum(labels.values())
    return {k: labels[k] / total for k in ("favor", "against", "none")}


def test_stance_follows_the_cohort_script(posts):
    right = _stance_shares(posts, "lean_right", "Donald Trump")
    left = _stance_shares(posts, "lean_left", "Donald Trump")
    moderate = _stance_shares(posts, "moderate", "Donald Trump")
    assert right["favor"] > 0.6 and right["against"] < 0.05
    assert left["against"] > 0.5 and left["favor"] < 0.05
    assert moderate["favor"] < 0.3 and moderate["against"] < 0.3  # mixed, mostly no stance
    harris_right = _stance_shares(posts, "lean_right", "Kamala Harris")
    assert harris_right["against"] > harris_right["favor"]
    spam = _stance_shares(posts, "spam", "Donald Trump")
    assert spam["none"] == 1.0


def test_sentiment_follows_the_moment_script(posts):
    by = defaultdict(Counter)
    for p in posts:
        if p.repost_of is None:
            by[(p.truth["moment_id"], p.truth["cohort"])][p.truth["sentiment"]] += 1

    def mean(moment: str, cohort: str) -> float:
        c = by[(moment, cohort)]
        return (c["positive"] - c["negative"]) / sum(c.values())

    assert mean("launch_failure", "moderate") < -0.2
    assert mean("space_starts", "lean_right") > 0.4
    assert mean("harris_campaign_response", "lean_left") > 0.2
    assert mean("musk_endorsement", "lean_left") < -0.3


def test_malformed_share_and_every_record_checks_like_the_worker(event, records):
    malformed = [r for r in records if r.malformed]
    share = simulation_spec(event).malformed_share
    assert len(malformed) / len(records) == pytest.approx(share, abs=0.01)
    reasons = Counter(r.reason.split("_")[0] for r in malformed)
    assert {"bad", "missing", "wrong", "negative", "ancient", "empty", "blank"} <= set(reasons)
    for record in malformed:
        with pytest.raises(InvalidPost):
            parse_post(record.value)
    for record in records:
        if not record.malformed:
            assert parse_post(record.value) == record.post
            assert record.key == record.post.author.id.encode()  # per-author partitions


def test_reposts_and_duplicates_reference_earlier_posts(event, records):
    seen: dict[str, object] = {}
    reposts = duplicates = 0
    for record in records:
        post = record.post
        if post is None:
            continue
        if record.kind == "duplicate":
            duplicates += 1
            assert seen[post.id] == record.value
            continue
        assert post.id not in seen
        if post.repost_of is not None:
            reposts += 1
            original = parse_post(seen[post.repost_of])
            assert original.repost_of is None  # reposts point at the original post
            assert post.text == f"RT @{original.author.handle}: {original.text}"
        seen[post.id] = record.value
    spec = simulation_spec(event)
    total = sum(1 for r in records if r.kind != "duplicate")
    assert reposts / total == pytest.approx(spec.repost_share, abs=0.03)
    assert duplicates / total == pytest.approx(spec.duplicate_share, abs=0.008)


def test_authors_are_persistent_and_heavy_tailed(posts):
    by_id = defaultdict(set)
    for p in posts:
        by_id[p.author.id].add((p.author.handle, p.author.bio, p.author.followers))
    assert all(len(v) == 1 for v in by_id.values())
    counts = Counter(p.author.id for p in posts)
    assert counts.most_common(1)[0][1] >= 10  # some people post a lot
    assert len(counts) < len(posts) / 2
    followers = sorted(next(iter(v))[2] for v in by_id.values())
    assert followers[-1] > 50 * statistics.median(followers)
    handles = {next(iter(v))[0] for v in by_id.values()}
    assert len(handles) == len(by_id)


def test_texts_are_varied(posts):
    texts = [p.text for p in posts if p.repost_of is None]
    assert len(set(texts)) / len(texts) > 0.5
    assert any("#" in t for t in texts)
    assert all("{" not in t for t in texts)  # every slot filled


def test_cli_simulate_dry_run(tmp_path):
    out = tmp_path / "posts.jsonl"
    args = ["simulate", "--max-posts", "300", "--seed", "9", "--run-id", "cli-run", "--dry-run"]
    result = CliRunner().invoke(main, [*args, str(out)])
    assert result.exit_code == 0, result.output
    assert "cli-run" in result.output and "malformed" in result.output
    lines = out.read_bytes().splitlines()
    assert len(lines) == 300
    valid = []
    for line in lines:
        try:
            valid.append(parse_post(line))
        except InvalidPost:
            continue
    assert len(valid) > 270
    assert {p.run_id for p in valid} == {"cli-run"}
    assert json.loads(lines[0])["event_id"] == "trump-musk-2024"


def test_cli_simulate_rejects_unknown_event():
    result = CliRunner().invoke(main, ["simulate", "--event", "nope", "--dry-run", "-"])
    assert result.exit_code != 0
    assert "no event file" in result.output
