"""The SQL behind the dashboard: every page query, aggregated inside DuckDB.

Each query comes in two layers: ``*_sql(...) -> (sql, params)`` builds the text (pure, easy
to test and to print), and a function taking a :data:`Query` callable runs it and returns a
small pandas frame. :data:`Query` is anything shaped like ``QueryClient(settings).sql`` (Arrow
Flight to the sink while it writes, the read-only file otherwise) or
:func:`from_connection` over a DuckDB connection, so the dashboard never opens the database
for writing and tests run the very same SQL against a real DuckDB file.

The base tables are queried directly (``minute`` and ``cohort`` are stored on ``scores`` and
``stances``), always filtered by run and time window first so the 3M-row benchmark stays fast.
Parameters are positional ``?``; timestamps travel as ISO strings cast in SQL, lists are
expanded to ``IN (?, ?, ...)``, so the same params survive the JSON tickets of Flight.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa

from stream.store import Z95, use_utc

Query = Callable[[str, list | None], pa.Table]
"""Runs one read-only SQL statement with positional params and returns Arrow."""


@dataclass(frozen=True)
class Filters:
    """What the page is looking at; every query honours all fields that apply to it."""

    run_id: str
    start: datetime | None = None  # first minute shown (inclusive)
    end: datetime | None = None  # last minute shown (inclusive)
    cohorts: tuple[str, ...] = ()  # empty: all cohorts
    topic: str | None = None
    targets: tuple[str, ...] = ()  # empty: all targets (stance queries)

    def with_(self, **changes: Any) -> Filters:
        return replace(self, **changes)


def from_connection(con: duckdb.DuckDBPyConnection) -> Query:
    """A :data:`Query` over an open DuckDB connection (tests, the benchmark, direct reads)."""

    def run(sql: str, params: list | None = None) -> pa.Table:
        cur = con.cursor()
        try:
            use_utc(cur)
            relation = cur.sql(sql, params=params) if params else cur.sql(sql)
            return relation.to_arrow_table()
        finally:
            cur.close()

    return run


def frame(query: Query, sql: str, params: list | None) -> pd.DataFrame:
    """Run and convert; timestamps stay tz-aware UTC."""
    return query(sql, params).to_pandas()


# --------------------------------------------------------------------------- filters


def _iso(value: datetime) -> str:
    """ISO text in UTC; naive datetimes are taken to be UTC already."""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat()


def _in(column: str, values: Sequence[str], params: list) -> str:
    params.extend(values)
    return f"{column} IN ({', '.join('?' for _ in values)})"


def _where(
    f: Filters,
    alias: str = "",
    *,
    topic: bool = True,
    cohorts: bool = True,
    time_column: str = "minute",
) -> tuple[str, list]:
    """``run_id = ? AND minute BETWEEN ...`` for the given table alias."""
    a = f"{alias}." if alias else ""
    params: list = [f.run_id]
    parts = [f"{a}run_id = ?"]
    if f.start is not None:
        parts.append(f"{a}{time_column} >= CAST(? AS TIMESTAMPTZ)")
        params.append(_iso(f.start))
    if f.end is not None:
        parts.append(f"{a}{time_column} <= CAST(? AS TIMESTAMPTZ)")
        params.append(_iso(f.end))
    if cohorts and f.cohorts:
        parts.append(_in(f"{a}cohort", f.cohorts, params))
    if topic and f.topic:
        parts.append(f"{a}topic = ?")
        params.append(f.topic)
    return " AND ".join(parts), params


# --------------------------------------------------------------------------- runs


def runs_sql() -> tuple[str, list]:
    """The run picker's list: ``v_runs`` (the one definition of a run's post count)."""
    return (
        """
        SELECT run_id, event_id, source, model_version, replay_of, first_seen_at,
               last_seen_at, posts, first_minute, last_minute
        FROM v_runs
        ORDER BY last_seen_at DESC, run_id
        """,
        [],
    )


def runs(query: Query) -> pd.DataFrame:
    """Every run, newest first, with its post count and minute range (for the run picker)."""
    return frame(query, *runs_sql())


def table_names(query: Query) -> set[str]:
    """Tables present in the main schema (optional tables differ between versions)."""
    names = query("SELECT table_name FROM information_schema.tables", None)
    return set(names.column("table_name").to_pylist())


def cohorts(query: Query, run_id: str) -> list[str]:
    """Cohort names called in a run (may include names the dashboard has no style for)."""
    table = query("SELECT DISTINCT cohort FROM scores WHERE run_id = ? ORDER BY 1", [run_id])
    return table.column("cohort").to_pylist()


def topics(query: Query, run_id: str) -> list[str]:
    """Topics seen in a run (for the topic filter)."""
    table = query(
        "SELECT DISTINCT topic FROM scores WHERE run_id = ? AND topic IS NOT NULL ORDER BY 1",
        [run_id],
    )
    return table.column("topic").to_pylist()


def targets(query: Query, run_id: str) -> list[str]:
    """Stance targets scored in a run."""
    table = query("SELECT DISTINCT target FROM stances WHERE run_id = ? ORDER BY 1", [run_id])
    return table.column("target").to_pylist()


# --------------------------------------------------------------------------- lines


def cohort_lines_sql(f: Filters, min_posts: int) -> tuple[str, list]:
    where, params = _where(f)
    sql = f"""
        SELECT minute, cohort, n, net_sentiment,
               net_sentiment - {Z95} * sd / sqrt(n) AS ci_low,
               net_sentiment + {Z95} * sd / sqrt(n) AS ci_high,
               positive_share, negative_share,
               n < ? AS low_n
        FROM (
            SELECT minute, cohort, count(*) AS n,
                   avg(net_sentiment) AS net_sentiment,
                   stddev_samp(net_sentiment) AS sd,
                   avg(CAST(sentiment = 'positive' AS DOUBLE)) AS positive_share,
                   avg(CAST(sentiment = 'negative' AS DOUBLE)) AS negative_share
            FROM scores WHERE {where}
            GROUP BY minute, cohort
        )
        ORDER BY minute, cohort
    """
    return sql, [int(min_posts), *params]  # the low_n ? comes first in the text


def cohort_lines(query: Query, f: Filters, min_posts: int) -> pd.DataFrame:
    """Net sentiment per minute x cohort with n, a 95% band and ``low_n`` (n < min_posts)."""
    return frame(query, *cohort_lines_sql(f, min_posts))


DialValue = TypeVar("DialValue", float, pd.Series)


def dial(approval: DialValue) -> DialValue:
    """Approval in [-1, 1] on the broadcast 0-100 scale (50 = split): the one conversion."""
    return 50.0 * (1.0 + approval)


def approval_lines_sql(f: Filters, min_stance: int) -> tuple[str, list]:
    """Rows of ``v_minute_approval`` (the formula lives there, once) for the window.

    The view has no topic: approval of a person is over everything said about them.
    """
    where, params = _where(f, topic=False)
    if f.targets:
        where += " AND " + _in("target", f.targets, params)
    sql = f"""
        SELECT minute, cohort, target, n_posts, n_stance, approval, lo, hi,
               n_stance < ? AS low_n
        FROM v_minute_approval
        WHERE {where}
        ORDER BY target, minute, cohort
    """
    return sql, [int(min_stance), *params]  # the low_n ? comes first in the text


def approval_lines(query: Query, f: Filters, min_stance: int) -> pd.DataFrame:
    """Approval per minute x cohort x target in [-1, 1] with its 95% interval and ``low_n``."""
    return frame(query, *approval_lines_sql(f, min_stance))


def cohort_sizes_sql(f: Filters) -> tuple[str, list]:
    where, params = _where(f, topic=False)
    sql = f"""
        SELECT cohort, count(DISTINCT author_id) AS authors, count(*) AS posts
        FROM scores WHERE {where}
        GROUP BY cohort ORDER BY posts DESC
    """
    return sql, params


def cohort_sizes(query: Query, f: Filters) -> pd.DataFrame:
    """Authors and posts per cohort in the window (shown beside the dial's legend)."""
    return frame(query, *cohort_sizes_sql(f))


def volume_sql(f: Filters) -> tuple[str, list]:
    where, params = _where(f)
    sql = f"""
        SELECT minute, cohort, count(*) AS n
        FROM scores WHERE {where}
        GROUP BY minute, cohort ORDER BY minute, cohort
    """
    return sql, params


def volume(query: Query, f: Filters) -> pd.DataFrame:
    """Posts per minute x cohort (distinct authors cost 4x on 3M rows; not shown)."""
    return frame(query, *volume_sql(f))


# --------------------------------------------------------------------------- markers


def markers_sql(f: Filters) -> tuple[str, list]:
    """Moments of the run's event and annotations of the run (or of the whole event)."""
    window, wparams = [], []
    if f.start is not None:
        window.append("at_time >= CAST(? AS TIMESTAMPTZ) - INTERVAL 1 MINUTE")
        wparams.append(_iso(f.start))
    if f.end is not None:
        window.append("at_time <= CAST(? AS TIMESTAMPTZ) + INTERVAL 1 MINUTE")
        wparams.append(_iso(f.end))
    clause = ("WHERE " + " AND ".join(window)) if window else ""
    sql = f"""
        WITH ev AS (SELECT any_value(event_id) AS event_id FROM runs WHERE run_id = ?),
        m AS (
            SELECT 'moment' AS kind, moment_id AS id, at_time, until_time,
                   title AS label, coalesce(description, '') AS detail, topic,
                   NULL::VARCHAR AS author
            FROM moments WHERE event_id = (SELECT event_id FROM ev)
            UNION ALL
            SELECT 'annotation', annotation_id, at_time, NULL, text, text, NULL, author
            FROM annotations
            WHERE run_id = ? OR (run_id IS NULL AND event_id = (SELECT event_id FROM ev))
        )
        SELECT * FROM m {clause} ORDER BY at_time, kind
    """
    return sql, [f.run_id, f.run_id, *wparams]


def markers(query: Query, f: Filters) -> pd.DataFrame:
    """Vertical rules for the charts: ``kind`` is 'moment' or 'annotation'."""
    return frame(query, *markers_sql(f))


# --------------------------------------------------------------------------- posts


def posts_sql(
    f: Filters,
    minute: datetime | None = None,
    *,
    sentiment: str | None = None,
    target: str | None = None,
    stance: str | None = None,
    limit: int = 200,
    sample: bool = False,
) -> tuple[str, list]:
    """Posts with their scores (drill-down, spike samples); ``minute`` narrows to one minute.

    ``target`` adds that target's stance columns (and ``stance`` filters on its label);
    ``sample`` orders by a hash of the id (a stable pseudo-random sample) instead of time.
    """
    where, params = _where(f, "s")
    if minute is not None:
        where += " AND s.minute = CAST(? AS TIMESTAMPTZ)"
        params.append(_iso(minute))
    if sentiment:
        where += " AND s.sentiment = ?"
        params.append(sentiment)
    stance_cols, stance_join = "", ""
    if target:
        stance_cols = ", st.label AS stance, st.net_stance"
        stance_join = (
            "JOIN stances st ON st.run_id = s.run_id AND st.post_id = s.post_id AND st.target = ?"
        )
        params = [target, *params]
        if stance:
            where += " AND st.label = ?"
            params.append(stance)
    order = "hash(s.post_id)" if sample else "s.event_time, s.post_id"
    sql = f"""
        SELECT s.event_time, s.minute, s.cohort, s.sentiment, s.net_sentiment, s.topic,
               s.emotion{stance_cols}, p.text, a.handle, s.author_id, s.post_id,
               s.model_version
        FROM scores s {stance_join}
        JOIN posts p ON p.run_id = s.run_id AND p.post_id = s.post_id
        LEFT JOIN authors a ON a.run_id = s.run_id AND a.author_id = s.author_id
        WHERE {where}
        ORDER BY {order}
        LIMIT ?
    """
    return sql, [*params, int(limit)]


def posts(query: Query, f: Filters, minute: datetime | None = None, **kwargs: Any) -> pd.DataFrame:
    """Drill-down posts; see :func:`posts_sql` for the filters."""
    return frame(query, *posts_sql(f, minute, **kwargs))


def minutes_with_posts(query: Query, f: Filters) -> list[pd.Timestamp]:
    """Minutes of the window that have posts (choices for the drill-down)."""
    where, params = _where(f)
    table = query(f"SELECT DISTINCT minute FROM scores WHERE {where} ORDER BY 1", params)
    return list(table.to_pandas()["minute"])


# --------------------------------------------------------------------------- health


@dataclass
class Health:
    """Is the pipeline alive and keeping up? (shown in the health panel)."""

    ingest: pd.DataFrame  # minute of received_at, posts
    latency: dict[str, float | None]  # score_p50_s, score_p95_s, e2e_p50_s, e2e_p95_s
    models: pd.DataFrame  # model_version, posts, last_scored_at
    last_received_at: pd.Timestamp | None
    rejects: int | None = None  # dead letters stored by the sink, when such a table exists
    sink: dict[str, Any] = field(default_factory=dict)  # latest sink_stats row, if any
    dead_letters: pd.DataFrame = field(default_factory=pd.DataFrame)  # stage, reason, n


DEAD_LETTER_COLUMNS = ["stage", "reason", "n"]


def dead_letters(query: Query, names: set[str] | None = None) -> pd.DataFrame:
    """Dead letters by stage and reason: the worker's (``posts.dlq``, indexed by the sink in
    ``dead_letters``, counted by ``reason_kind`` as ``swingdial dlq`` does) and the sink's
    own rejects (``sink_rejects``)."""
    names = table_names(query) if names is None else names
    parts = []
    if "sink_rejects" in names:
        parts.append("SELECT 'sink' AS stage, reason, count(*) AS n FROM sink_rejects GROUP BY 2")
    if "dead_letters" in names:
        parts.append(
            "SELECT 'worker' AS stage, reason_kind AS reason, count(*) AS n "
            "FROM dead_letters GROUP BY 2"
        )
    if not parts:
        return pd.DataFrame(columns=DEAD_LETTER_COLUMNS)
    sql = " UNION ALL ".join(parts) + " ORDER BY n DESC, stage, reason"
    return frame(query, sql, None)[DEAD_LETTER_COLUMNS]


def health(query: Query, run_id: str, window_min: int) -> Health:
    """Ingest rate and latency over the run's last ``window_min`` minutes of arrivals."""
    recent = """
        WITH last AS (SELECT max(received_at) AS t FROM scores WHERE run_id = ?)
        SELECT {cols} FROM scores, last
        WHERE run_id = ? AND received_at > last.t - to_minutes(CAST(? AS BIGINT))
    """
    params = [run_id, run_id, int(window_min)]
    ingest = frame(
        query,
        recent.format(cols="date_trunc('minute', received_at) AS minute, count(*) AS posts")
        + " GROUP BY 1 ORDER BY 1",
        params,
    )
    lat = query(
        recent.format(
            cols="quantile_cont(epoch(scored_at) - epoch(received_at), 0.5) AS score_p50_s, "
            "quantile_cont(epoch(scored_at) - epoch(received_at), 0.95) AS score_p95_s, "
            "quantile_cont(epoch(stored_at) - epoch(received_at), 0.5) AS e2e_p50_s, "
            "quantile_cont(epoch(stored_at) - epoch(received_at), 0.95) AS e2e_p95_s, "
            "max(received_at) AS last_received_at"
        ),
        params,
    ).to_pylist()[0]
    last = lat.pop("last_received_at")
    models = frame(
        query,
        "SELECT model_version, count(*) AS posts, max(scored_at) AS last_scored_at "
        "FROM scores WHERE run_id = ? GROUP BY 1 ORDER BY 3 DESC",
        [run_id],
    )
    names = table_names(query)
    letters = dead_letters(query, names)
    sink_stage = letters[letters["stage"] == "sink"]
    rejects = int(sink_stage["n"].sum()) if "sink_rejects" in names else None
    sink: dict[str, Any] = {}
    if "sink_stats" in names:
        rows = query("SELECT * FROM sink_stats ORDER BY last_batch_at DESC LIMIT 1", None)
        sink = rows.to_pylist()[0] if rows.num_rows else {}
    return Health(
        ingest=ingest,
        latency={k: (None if v is None or math.isnan(v) else float(v)) for k, v in lat.items()},
        models=models,
        last_received_at=None if last is None else pd.Timestamp(last),
        rejects=rejects,
        sink=sink,
        dead_letters=letters,
    )


# --------------------------------------------------------------------------- benchmark


def page_queries(f: Filters, min_posts: int) -> dict[str, tuple[str, list]]:
    """The SQL one dashboard page render runs (used by the benchmark)."""
    mid = None
    if f.start is not None and f.end is not None:
        mid = f.start + (f.end - f.start) / 2
    return {
        "runs": runs_sql(),
        "cohort_lines": cohort_lines_sql(f, min_posts),
        "approval_lines": approval_lines_sql(f.with_(targets=()), min_posts),
        "cohort_sizes": cohort_sizes_sql(f),
        "volume": volume_sql(f),
        "markers": markers_sql(f),
        "drilldown_posts": posts_sql(f, mid, limit=200),
        "drilldown_posts_target": posts_sql(f, mid, target="Donald Trump", limit=200),
        "spike_sample": posts_sql(f, mid, limit=2000, sample=True),
    }


def time_queries(
    query: Query, queries: dict[str, tuple[str, list]], repeats: int = 5
) -> dict[str, float]:
    """Median wall time in seconds of each query over ``repeats`` runs."""
    out: dict[str, float] = {}
    for name, (sql, params) in queries.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            query(sql, params)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out
