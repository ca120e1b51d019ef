"""dashboard.spikes on constructed series (must find / must not find) and on the fixture DB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from dashboard import queries, spikes
from tests.fixtures_db import LIVE_RUN, START, build_test_db

T0 = pd.Timestamp("2024-08-13 00:00", tz="UTC")


def series(
    n: list[float] | np.ndarray, net: list[float] | np.ndarray, cohort: str = "moderate"
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "minute": pd.date_range(T0, periods=len(n), freq="min"),
            "cohort": cohort,
            "n": np.asarray(n, dtype=float),
            "net_sentiment": np.asarray(net, dtype=float),
        }
    )


def noisy(level: float, size: int, spread: float, seed: int) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, spread, size)


def test_flat_series_give_no_spikes() -> None:
    constant = series([100] * 60, [0.1] * 60)
    assert spikes.detect(constant).empty
    stationary = series(np.round(noisy(100, 90, 6, 1)), noisy(0.05, 90, 0.04, 2))
    assert spikes.detect(stationary).empty
    assert list(spikes.detect(stationary).columns) == spikes.SPIKE_COLUMNS
    assert spikes.detect(series([], [])).empty


def test_volume_spike_is_found_at_its_minute() -> None:
    n = np.round(noisy(100, 60, 5, 3))
    n[40] = 320
    found = spikes.detect(series(n, noisy(0.0, 60, 0.03, 4)))
    vol = found[(found["kind"] == "volume") & (found["cohort"] == "moderate")]
    assert len(vol) == 1
    row = vol.iloc[0]
    assert row["minute"] == T0 + pd.Timedelta(minutes=40)
    assert row["value"] == 320 and 90 < row["baseline"] < 110
    assert row["magnitude"] > spikes.SpikeParams().threshold
    # the 'all' total sees it too
    assert ((found["cohort"] == "all") & (found["kind"] == "volume")).any()


def test_sentiment_drop_and_rise() -> None:
    net = noisy(0.1, 60, 0.02, 5)
    net[30:35] = -0.45  # a five-minute slump: one episode, reported at its onset
    found = spikes.detect(series([50] * 60, net))
    drops = found[found["kind"] == "sentiment_drop"]
    assert len(drops) == 1
    assert drops.iloc[0]["minute"] == T0 + pd.Timedelta(minutes=30)
    assert drops.iloc[0]["minutes"] >= 1 and drops.iloc[0]["value"] < -0.4
    rises = found[found["kind"] == "sentiment_rise"]  # the recovery at minute 35
    assert (rises["minute"] >= T0 + pd.Timedelta(minutes=35)).all()


def test_small_moves_and_low_n_points_are_ignored() -> None:
    net = noisy(0.0, 60, 0.01, 6)
    net[30] = 0.1  # many MADs away but only 0.1 absolute: below min_shift
    n = [40] * 60
    n[45] = 2  # an extreme value carried by two posts
    net[45] = -0.9
    found = spikes.detect(series(n, net))
    assert found[found["kind"].str.startswith("sentiment")].empty


def test_cohorts_are_judged_separately() -> None:
    calm = series([60] * 50, noisy(0.2, 50, 0.02, 7), "lean_left")
    net = noisy(0.2, 50, 0.02, 8)
    net[25] = -0.4
    moved = series([60] * 50, net, "lean_right")
    found = spikes.detect(pd.concat([calm, moved]))
    assert set(found["cohort"]) == {"lean_right"}


def test_drivers_name_the_terms_topics_and_samples() -> None:
    baseline = pd.DataFrame(
        {
            "text": [f"listening to the conversation, point {i}" for i in range(200)],
            "cohort": ["moderate", "lean_left"] * 100,
            "topic": "other",
            "net_sentiment": 0.1,
        }
    )
    window = pd.DataFrame(
        {
            "text": ["spaces keeps crashing, ddos again"] * 30 + ["the conversation is on"] * 10,
            "cohort": ["moderate"] * 40,
            "topic": ["tech_outage"] * 30 + ["other"] * 10,
            "net_sentiment": [-0.7] * 30 + [0.1] * 10,
        }
    )
    found = spikes.drivers(window, baseline, kind="sentiment_drop")
    top_terms = [t for t, _, _ in found.terms[:3]]
    assert {"crashing", "ddos"} <= set(top_terms)
    assert "conversation" not in top_terms  # as common before the spike as during it
    assert found.topics[0][0] == "tech_outage"
    assert found.cohorts[0][0] == "moderate"
    assert "crashing" in found.samples[0]
    assert "terms: " in found.summary() and "tech_outage" in found.summary()
    assert spikes.drivers(window.iloc[0:0], baseline).terms == []


def test_tokenize_drops_stopwords_keeps_hashtags() -> None:
    assert spikes.tokenize("The Space is DOWN again, #MAGA and it's a mess") == [
        "space",
        "down",
        "#maga",
        "mess",
    ]


@pytest.fixture(scope="module")
def fixture_lines(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    path: Path = build_test_db(tmp_path_factory.mktemp("spikes") / "fx.duckdb", minutes=70)
    con = duckdb.connect(str(path), read_only=True)
    try:
        return queries.cohort_lines(queries.from_connection(con), queries.Filters(LIVE_RUN), 5)
    finally:
        con.close()


def test_fixture_outage_is_detected(fixture_lines: pd.DataFrame) -> None:
    found = spikes.detect(fixture_lines)
    start = pd.Timestamp(START)
    outage = found[
        (found["kind"] == "volume")
        & (found["cohort"] == "all")
        & (found["minute"] >= start + pd.Timedelta(minutes=8))
        & (found["minute"] <= start + pd.Timedelta(minutes=12))
    ]
    assert len(outage) == 1
    mood = found[
        (found["kind"] == "sentiment_drop") & (found["minute"] <= start + pd.Timedelta(minutes=12))
    ]
    assert "moderate" in set(mood["cohort"])
