"""dashboard.queries on a real fixture DuckDB: every aggregate is checked against raw SQL."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from dashboard import queries
from stream.config import Settings
from stream.query import QueryClient
from tests.fixtures_db import (
    EVENT_ID,
    LIVE_RUN,
    REPLAY_RUN,
    SPARSE_MINUTES,
    START,
    build_test_db,
    stance_db,
)

MIN_POSTS = 5
T0 = pd.Timestamp(START)


def minute(offset: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=offset)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_db(tmp_path_factory.mktemp("views") / "fx.duckdb", minutes=60)


@pytest.fixture(scope="module")
def con(db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(db), read_only=True)
    connection.execute("SET TimeZone = 'UTC'")
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def q(con: duckdb.DuckDBPyConnection) -> queries.Query:
    return queries.from_connection(con)


def raw(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def test_every_builder_binds_as_many_params_as_placeholders() -> None:
    f = queries.Filters(
        LIVE_RUN, minute(1), minute(30), ("moderate", "lean_left"), "economy", ("Elon Musk",)
    )
    built = [
        queries.cohort_lines_sql(f, MIN_POSTS),
        queries.approval_lines_sql(f, MIN_POSTS),
        queries.cohort_sizes_sql(f),
        queries.volume_sql(f),
        queries.markers_sql(f),
        queries.posts_sql(f, minute(10), sentiment="negative", target="Elon Musk", stance="none"),
        *queries.page_queries(f, MIN_POSTS).values(),
    ]
    for sql, params in built:
        assert sql.count("?") == len(params), sql


def test_runs_match_raw_counts(q: queries.Query, con: duckdb.DuckDBPyConnection) -> None:
    runs = queries.runs(q).set_index("run_id")
    assert set(runs.index) == {LIVE_RUN, REPLAY_RUN}
    counts = raw(con, "SELECT run_id, count(*) AS n FROM scores GROUP BY 1").set_index("run_id")
    for run_id in runs.index:
        assert runs.loc[run_id, "posts"] == counts.loc[run_id, "n"]
    assert runs.loc[REPLAY_RUN, "replay_of"] == LIVE_RUN
    assert runs.loc[LIVE_RUN, "model_version"] != runs.loc[REPLAY_RUN, "model_version"]


def test_cohort_lines_match_raw_sql(q: queries.Query, con: duckdb.DuckDBPyConnection) -> None:
    lines = queries.cohort_lines(q, queries.Filters(LIVE_RUN), MIN_POSTS)
    expected = raw(
        con,
        "SELECT minute, cohort, count(*) AS n, avg(net_sentiment) AS net FROM scores "
        "WHERE run_id = ? GROUP BY 1, 2",
        [LIVE_RUN],
    )
    merged = lines.merge(expected, on=["minute", "cohort"], how="outer", validate="1:1")
    assert len(merged) == len(lines) == len(expected)
    assert (merged["n_x"] == merged["n_y"]).all()
    assert (merged["net_sentiment"] - merged["net"]).abs().max() < 1e-6
    # the band surrounds the mean wherever it exists, and narrows with more posts
    band = lines.dropna(subset=["ci_low"])
    assert (band["ci_low"] <= band["net_sentiment"]).all()
    assert (band["net_sentiment"] <= band["ci_high"]).all()
    big, small = band.nlargest(20, "n"), band.nsmallest(20, "n")
    assert (big["ci_high"] - big["ci_low"]).mean() < (small["ci_high"] - small["ci_low"]).mean()


def test_low_n_flag(q: queries.Query) -> None:
    lines = queries.cohort_lines(q, queries.Filters(LIVE_RUN), MIN_POSTS)
    assert (lines["low_n"] == (lines["n"] < MIN_POSTS)).all()
    sparse = lines[lines["minute"] == minute(SPARSE_MINUTES[0])]
    assert not sparse.empty and sparse["low_n"].all()
    assert not lines[lines["minute"] == minute(20)]["low_n"].any()
    # a stricter threshold flags more points
    strict = queries.cohort_lines(q, queries.Filters(LIVE_RUN), 30)
    assert strict["low_n"].sum() > lines["low_n"].sum()


def test_window_cohort_and_topic_filters(q: queries.Query, con: duckdb.DuckDBPyConnection) -> None:
    f = queries.Filters(LIVE_RUN, start=minute(10), end=minute(19), cohorts=("moderate",))
    lines = queries.cohort_lines(q, f, MIN_POSTS)
    assert set(lines["cohort"]) == {"moderate"}
    assert lines["minute"].min() == minute(10) and lines["minute"].max() == minute(19)
    assert lines["minute"].nunique() == 10
    topical = queries.cohort_lines(q, queries.Filters(LIVE_RUN, topic="tech_outage"), MIN_POSTS)
    n = raw(
        con,
        "SELECT count(*) AS n FROM scores WHERE run_id = ? AND topic = 'tech_outage'",
        [LIVE_RUN],
    )["n"][0]
    assert topical["n"].sum() == n > 0


def test_volume_sums_to_post_count(q: queries.Query, con: duckdb.DuckDBPyConnection) -> None:
    f = queries.Filters(REPLAY_RUN, start=minute(5), end=minute(25))
    vol = queries.volume(q, f)
    n = raw(
        con,
        "SELECT count(*) AS n FROM scores WHERE run_id = ? AND minute BETWEEN ? AND ?",
        [REPLAY_RUN, minute(5), minute(25)],
    )["n"][0]
    assert vol["n"].sum() == n > 0


def test_outage_is_louder_and_more_negative(q: queries.Query) -> None:
    f = queries.Filters(LIVE_RUN)
    vol = queries.volume(q, f).groupby("minute")["n"].sum()
    calm, outage = (
        vol[vol.index < minute(8)].mean(),
        vol[(vol.index >= minute(12)) & (vol.index <= minute(35))].mean(),
    )
    assert outage > 2 * calm
    lines = queries.cohort_lines(q, f.with_(cohorts=("moderate",)), MIN_POSTS)
    during = lines[(lines["minute"] >= minute(12)) & (lines["minute"] <= minute(35))]
    assert during["net_sentiment"].mean() < -0.3


def test_markers_scope_annotations_to_run_or_event(q: queries.Query) -> None:
    live = queries.markers(q, queries.Filters(LIVE_RUN))
    replay = queries.markers(q, queries.Filters(REPLAY_RUN))
    assert (live["kind"] == "moment").sum() >= 3
    assert set(live.loc[live["kind"] == "annotation", "id"]) == {"ann-1", "ann-3"}
    assert set(replay.loc[replay["kind"] == "annotation", "id"]) == {"ann-3"}  # event-wide only
    window = queries.markers(q, queries.Filters(LIVE_RUN, start=minute(40), end=minute(50)))
    assert window["at_time"].between(minute(39), minute(51)).all()
    assert live["at_time"].is_monotonic_increasing


def test_drilldown_posts_filters(q: queries.Query, con: duckdb.DuckDBPyConnection) -> None:
    f = queries.Filters(LIVE_RUN)
    at = minute(20)
    everything = queries.posts(q, f, at, limit=10_000)
    n = raw(
        con, "SELECT count(*) AS n FROM scores WHERE run_id = ? AND minute = ?", [LIVE_RUN, at]
    )["n"][0]
    assert len(everything) == n and (everything["minute"] == at).all()
    assert everything["text"].str.len().gt(0).all()
    neg = queries.posts(q, f.with_(cohorts=("moderate",)), at, sentiment="negative", limit=10_000)
    assert 0 < len(neg) < len(everything)
    assert (neg["sentiment"] == "negative").all() and (neg["cohort"] == "moderate").all()
    stance = queries.posts(q, f, at, target="Elon Musk", stance="against", limit=10_000)
    assert len(stance) > 0 and (stance["stance"] == "against").all()
    assert (stance["net_stance"] < 0).all()
    assert len(queries.posts(q, f, at, limit=3)) == 3
    sample = queries.posts(q, f, at, limit=5, sample=True)
    assert list(sample["post_id"]) == list(queries.posts(q, f, at, limit=5, sample=True)["post_id"])


def test_health(q: queries.Query, con: duckdb.DuckDBPyConnection) -> None:
    h = queries.health(q, LIVE_RUN, 10)
    assert 9 <= len(h.ingest) <= 11 and h.ingest["posts"].sum() > 0
    expected = raw(
        con,
        "SELECT quantile_cont(epoch(scored_at) - epoch(received_at), 0.5) AS p50 FROM scores "
        "WHERE run_id = ? AND received_at > (SELECT max(received_at) FROM scores "
        "WHERE run_id = ?) - INTERVAL 10 MINUTE",
        [LIVE_RUN, LIVE_RUN],
    )["p50"][0]
    assert h.latency["score_p50_s"] == pytest.approx(expected)
    assert h.latency["score_p50_s"] < h.latency["score_p95_s"] < h.latency["e2e_p95_s"]
    assert list(h.models["model_version"]) == ["minilm-heads-1.0.0"]
    assert h.rejects == 0  # the sink_rejects table exists and is empty
    assert h.last_received_at is not None


def test_lists_for_filters(q: queries.Query) -> None:
    assert "tech_outage" in queries.topics(q, LIVE_RUN)
    assert queries.targets(q, LIVE_RUN) == sorted(Settings().targets)
    minutes = queries.minutes_with_posts(q, queries.Filters(LIVE_RUN, end=minute(9)))
    assert minutes == [minute(i) for i in range(10)]


def test_same_answers_through_query_client(db: Path, q: queries.Query) -> None:
    """The dashboard's real read path (QueryClient, direct file read) agrees."""
    with socket.socket() as sock:  # a port where no Flight server answers
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = QueryClient(Settings(duckdb_path=db, query_port=port))
    f = queries.Filters(LIVE_RUN, start=minute(5), end=minute(15), cohorts=("moderate",))
    via_client = queries.cohort_lines(client.sql, f, MIN_POSTS)
    direct = queries.cohort_lines(q, f, MIN_POSTS)
    pd.testing.assert_frame_equal(via_client, direct)
    assert client.last_route == "direct"
    assert queries.markers(client.sql, f)["id"].tolist() == queries.markers(q, f)["id"].tolist()
    assert EVENT_ID


# --------------------------------------------------------------------------- v_minute_approval


def approval_rows(db_path: Path) -> pd.DataFrame:
    connection = duckdb.connect(str(db_path), read_only=True)
    try:
        return connection.execute(
            "SELECT * FROM v_minute_approval ORDER BY run_id, minute, cohort, target"
        ).df()
    finally:
        connection.close()


def test_approval_view_known_rows(tmp_path: Path) -> None:
    """Known answers: crisp labels give the textbook Wilson interval; 'none' posts drop out."""
    rows = [  # 8 favor, 2 against, 5 none for Trump among moderates at minute 0
        *[("r", f"f{i}", "Donald Trump", 0, "moderate", "favor", 1.0, 0.0, 0.0) for i in range(8)],
        *[
            ("r", f"a{i}", "Donald Trump", 0, "moderate", "against", 0.0, 1.0, 0.0)
            for i in range(2)
        ],
        *[("r", f"n{i}", "Donald Trump", 0, "moderate", "none", 0.3, 0.1, 0.6) for i in range(5)],
        # probability-weighted: favor 0.6/0.2 and against 0.1/0.7 -> (0.7 - 0.9) / 1.6
        ("r", "w1", "Donald Trump", 1, "moderate", "favor", 0.6, 0.2, 0.2),
        ("r", "w2", "Donald Trump", 1, "moderate", "against", 0.1, 0.7, 0.2),
        # only no-stance posts: counted in n_posts, no approval
        ("r", "z1", "Elon Musk", 0, "lean_left", "none", 0.2, 0.1, 0.7),
    ]
    got = approval_rows(stance_db(tmp_path / "a.duckdb", rows)).set_index(["minute", "target"])
    crisp = got.loc[(minute(0), "Donald Trump")]
    assert (crisp["n_posts"], crisp["n_stance"]) == (15, 10)
    assert crisp["approval"] == pytest.approx(0.6)  # (8 - 2) / 10
    # Wilson 95% for 8 of 10: 0.4902 .. 0.9433 (textbook value), as approval 2p - 1
    assert crisp["lo"] == pytest.approx(2 * 0.4902 - 1, abs=2e-4)
    assert crisp["hi"] == pytest.approx(2 * 0.9433 - 1, abs=2e-4)
    weighted = got.loc[(minute(1), "Donald Trump")]
    assert weighted["n_stance"] == 2
    assert weighted["approval"] == pytest.approx((0.7 - 0.9) / 1.6, abs=1e-6)
    assert -1 <= weighted["lo"] < weighted["approval"] < weighted["hi"] <= 1
    silent = got.loc[(minute(0), "Elon Musk")]
    assert (silent["n_posts"], silent["n_stance"]) == (1, 0)
    assert pd.isna(silent["approval"]) and pd.isna(silent["lo"]) and pd.isna(silent["hi"])


def test_approval_view_interval_narrows_and_stays_in_range(tmp_path: Path) -> None:
    rows = []
    for offset, n in ((0, 4), (1, 400)):  # same 3:1 split, 100x the posts
        for i in range(n):
            label = "favor" if i % 4 else "against"
            pf, pa_ = (0.9, 0.05) if label == "favor" else (0.05, 0.9)
            rows.append(
                ("r", f"p{offset}-{i}", "Kamala Harris", offset, "lean_left", label, pf, pa_, 0.05)
            )
    rows.append(("r", "all-favor", "Kamala Harris", 2, "lean_left", "favor", 1.0, 0.0, 0.0))
    got = approval_rows(stance_db(tmp_path / "b.duckdb", rows)).set_index("minute")
    small, big, one = got.loc[minute(0)], got.loc[minute(1)], got.loc[minute(2)]
    assert small["approval"] == pytest.approx(big["approval"], abs=1e-6)
    assert big["hi"] - big["lo"] < (small["hi"] - small["lo"]) / 5
    assert one["approval"] == pytest.approx(1.0) and one["hi"] == pytest.approx(1.0)
    assert one["lo"] < 0  # one post proves little
    assert (got["lo"] >= -1 - 1e-9).all() and (got["hi"] <= 1 + 1e-9).all()


def test_approval_view_matches_pandas_on_fixture(con: duckdb.DuckDBPyConnection) -> None:
    view = raw(con, "SELECT * FROM v_minute_approval WHERE run_id = ?", [LIVE_RUN])
    st = raw(con, "SELECT * FROM stances WHERE run_id = ?", [LIVE_RUN])
    taking = st[st["label"] != "none"]
    sums = taking.groupby(["minute", "cohort", "target"])[["p_favor", "p_against"]].sum()
    expected = (sums["p_favor"] - sums["p_against"]) / (sums["p_favor"] + sums["p_against"])
    merged = view.set_index(["minute", "cohort", "target"]).join(expected.rename("pandas"))
    assert len(view) == st.groupby(["minute", "cohort", "target"]).ngroups
    both = merged.dropna(subset=["approval"])
    assert len(both) > 100
    assert (both["approval"] - both["pandas"]).abs().max() < 1e-5
    assert (both["lo"] <= both["approval"] + 1e-9).all()
    assert (both["approval"] <= both["hi"] + 1e-9).all()
    # the fixture's story: lean_right approves of Trump, lean_left does not
    trump = both.xs("Donald Trump", level="target").groupby("cohort")["approval"].mean()
    assert trump["lean_right"] > 0.3 and trump["lean_left"] < -0.3
