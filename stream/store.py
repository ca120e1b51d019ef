"""The DuckDB schema, and opening the database.

Only the sink writes (see ``stream/sink.py``); everything else reads through
``stream/query.py``. Columns used to group charts (minute, cohort) are stored on the score
rows themselves so the dashboard's per-minute queries need no joins.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from stream import tables
from stream.tables import merged_batch_schema, tables_sql

SCHEMA_VERSION = 3
# What each version added; opening an older file applies the steps after its version (all
# additive so far: TABLES_SQL creates what is missing). A newer file is refused.
MIGRATIONS = {
    2: "kafka_offsets keyed by consumer group; sink_stats",
    3: "dead_letters: the posts.dlq topic, indexed by the sink",
}

TABLES_SQL = tables_sql()
log = logging.getLogger(__name__)

# Stable read API for the dashboard and ad-hoc SQL (documented in docs/schema.md).
# ci_* is a normal-approximation 95% interval of the mean (NULL below two posts).
Z95 = 1.959964  # two-sided 95% normal quantile: every interval in views and dashboard uses it

# The approval dial (issue 12): among posts whose stance label toward the target is favor or
# against, approval = (sum p_favor - sum p_against) / (sum p_favor + sum p_against), in
# [-1, 1] (the dashboard shows 50 * (1 + approval), 0-100). lo/hi: Wilson 95% interval of the
# favor share f = sum p_favor / (sum p_favor + sum p_against) with n = n_stance, mapped by
# 2f - 1. Posts labelled 'none' are left out: they say nothing about the target and would
# pull every cohort toward 0 (docs/schema.md, v_minute_approval).
APPROVAL_SQL = f"""
CREATE OR REPLACE VIEW v_minute_approval AS
WITH agg AS (
    SELECT run_id, minute, cohort, target,
           count(*)                                         AS n_posts,
           count(*) FILTER (WHERE label <> 'none')          AS n_stance,
           sum(p_favor) FILTER (WHERE label <> 'none')      AS sum_favor,
           sum(p_against) FILTER (WHERE label <> 'none')    AS sum_against
    FROM stances
    GROUP BY run_id, minute, cohort, target
), shares AS (
    SELECT *,
           CASE WHEN n_stance > 0 AND sum_favor + sum_against > 0
                THEN sum_favor / (sum_favor + sum_against) END AS f,
           {Z95 * Z95} / n_stance AS zz_n
    FROM agg
)
SELECT run_id, minute, cohort, target, n_posts, n_stance,
       2 * f - 1 AS approval,
       2 * ((f + zz_n / 2) / (1 + zz_n)
            - {Z95} / (1 + zz_n) * sqrt(f * (1 - f) / n_stance + zz_n / (4 * n_stance))) - 1
           AS lo,
       2 * ((f + zz_n / 2) / (1 + zz_n)
            + {Z95} / (1 + zz_n) * sqrt(f * (1 - f) / n_stance + zz_n / (4 * n_stance))) - 1
           AS hi
FROM shares;
"""

VIEWS_SQL = (
    f"""
CREATE OR REPLACE VIEW v_minute_cohort AS
SELECT run_id, minute, cohort,
       count(*)                                                  AS posts,
       avg(net_sentiment)                                        AS net_sentiment,
       stddev_samp(net_sentiment)                                AS stddev,
       avg(net_sentiment) - {Z95} * stddev_samp(net_sentiment) / sqrt(count(*)) AS ci_low,
       avg(net_sentiment) + {Z95} * stddev_samp(net_sentiment) / sqrt(count(*)) AS ci_high,
       avg(CASE WHEN sentiment = 'positive' THEN 1.0 ELSE 0.0 END) AS positive_share,
       avg(CASE WHEN sentiment = 'negative' THEN 1.0 ELSE 0.0 END) AS negative_share
FROM scores
GROUP BY run_id, minute, cohort;

CREATE OR REPLACE VIEW v_minute_cohort_target AS
SELECT run_id, minute, cohort, target,
       count(*)                                                  AS posts,
       avg(net_stance)                                           AS net_stance,
       stddev_samp(net_stance)                                   AS stddev,
       avg(CASE WHEN label = 'favor' THEN 1.0 ELSE 0.0 END)      AS favor_share,
       avg(CASE WHEN label = 'against' THEN 1.0 ELSE 0.0 END)    AS against_share,
       avg(CASE WHEN label = 'none' THEN 1.0 ELSE 0.0 END)       AS none_share,
       avg(net_stance) - {Z95} * stddev_samp(net_stance) / sqrt(count(*)) AS ci_low,
       avg(net_stance) + {Z95} * stddev_samp(net_stance) / sqrt(count(*)) AS ci_high
FROM stances
GROUP BY run_id, minute, cohort, target;

CREATE OR REPLACE VIEW v_minute_volume AS
SELECT run_id, minute,
       count(*)                                        AS posts,
       count(DISTINCT author_id)                       AS authors,
       count(*) FILTER (WHERE cohort = 'moderate')     AS moderate,
       count(*) FILTER (WHERE cohort = 'lean_left')    AS lean_left,
       count(*) FILTER (WHERE cohort = 'lean_right')   AS lean_right,
       count(*) FILTER (WHERE cohort = 'unplaced')     AS unplaced,
       count(*) FILTER (WHERE cohort = 'unknown')      AS unknown,
       avg(epoch(stored_at) - epoch(received_at))      AS mean_latency_s
FROM scores
GROUP BY run_id, minute;

CREATE OR REPLACE VIEW v_dead_letter_reasons AS
SELECT reason_kind, count(*) AS records, sum(CASE WHEN truncated THEN 1 ELSE 0 END) AS truncated,
       min(dead_at) AS first_at, max(dead_at) AS last_at, any_value(reason) AS example
FROM dead_letters
GROUP BY reason_kind;

CREATE OR REPLACE VIEW v_sample_posts AS
SELECT p.run_id, p.post_id, p.event_id, p.event_time, p.minute, p.author_id,
       a.handle, a.followers, s.cohort, p.text, p.lang, p.repost_of, p.reply_to,
       s.sentiment, s.net_sentiment, s.emotion, s.topic, st.stances, s.model_version, p.source
FROM posts p
JOIN scores s ON s.run_id = p.run_id AND s.post_id = p.post_id
LEFT JOIN authors a ON a.run_id = p.run_id AND a.author_id = p.author_id
LEFT JOIN (
    SELECT run_id, post_id, map(list(target ORDER BY target), list(net_stance ORDER BY target))
           AS stances
    FROM stances GROUP BY run_id, post_id
) st ON st.run_id = p.run_id AND st.post_id = p.post_id;

CREATE OR REPLACE VIEW v_author_cohorts AS
SELECT run_id, author_id, handle, cohort, cohort_evidence AS evidence, posts_seen,
       followers, bio, updated_at
FROM authors;

CREATE OR REPLACE VIEW v_runs AS
SELECT r.run_id, r.event_id, r.source, r.replay_of, r.model_version,
       r.first_seen_at, r.last_seen_at,
       coalesce(p.posts, 0)   AS posts,
       coalesce(p.authors, 0) AS authors,
       p.first_event_time, p.last_event_time, p.first_minute, p.last_minute, p.minutes
FROM runs r
LEFT JOIN (
    SELECT run_id, count(*) AS posts, count(DISTINCT author_id) AS authors,
           min(event_time) AS first_event_time, max(event_time) AS last_event_time,
           min(minute) AS first_minute, max(minute) AS last_minute,
           count(DISTINCT minute) AS minutes
    FROM posts GROUP BY run_id
) p ON p.run_id = r.run_id;
"""
    + APPROVAL_SQL
)

VIEWS = (
    "v_minute_approval",
    "v_minute_cohort",
    "v_minute_cohort_target",
    "v_minute_volume",
    "v_sample_posts",
    "v_author_cohorts",
    "v_runs",
    "v_dead_letter_reasons",
)


def connect(
    path: Path | str, read_only: bool = False, lock_wait_s: float = 0.0
) -> duckdb.DuckDBPyConnection:
    """Open the database; the writer also creates the schema.

    ``lock_wait_s`` (writer only): how long to wait while another process holds DuckDB's file
    lock, see :func:`open_writable`.
    """
    path = Path(path)
    if read_only:
        if not path.exists():
            raise FileNotFoundError(f"no swingdial database at {path} (has the sink run yet?)")
        con = duckdb.connect(str(path), read_only=True)
        use_utc(con)
        return con
    path.parent.mkdir(parents=True, exist_ok=True)
    con = open_writable(path, lock_wait_s)
    use_utc(con)
    init_schema(con)
    return con


def is_lock_error(exc: duckdb.Error) -> bool:
    """DuckDB's refusal because another process holds the file (an IOException naming the lock)."""
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def open_writable(path: Path, wait_s: float) -> duckdb.DuckDBPyConnection:
    """Open ``path`` for writing, retrying while another process holds the file lock.

    With no sink running, every reader (``swingdial sql``, the dashboard) opens the file
    read-only for one query, and DuckDB refuses a writer until that query closes. A sink
    starting at that moment waits the query out instead of exiting; a lock that outlasts
    ``wait_s`` (another writer, a sink started twice) still fails with DuckDB's error, which
    names the process holding it.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.05
    told = False
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if not is_lock_error(exc) or time.monotonic() + delay > deadline:
                raise
            if not told:
                log.warning("%s is locked; waiting up to %gs for it: %s", path, wait_s, exc)
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def use_utc(con: duckdb.DuckDBPyConnection) -> None:
    """Charts bucket by UTC minute. A process shares one DuckDB instance per file, and the
    read path locks its settings (``stream.query.lock_down``) after setting UTC itself."""
    try:
        con.execute("SET TimeZone = 'UTC'")
    except duckdb.InvalidInputException:
        ((zone,),) = con.execute("SELECT current_setting('TimeZone')").fetchall()
        if zone != "UTC":
            raise


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> Any:
    """The one value a query returns (an aggregate: it always has a row)."""
    row = con.execute(sql, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {sql!r}")
    return row[0]


class SchemaVersionError(RuntimeError):
    """The database was written by a newer swingdial than this one."""


def stored_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The schema version a database file was last written with (None: a new file)."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "schema_info" not in tables:
        return None
    rows = con.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchall()
    return int(rows[0][0]) if rows else None


def init_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables and (re)create the views; safe on every start.

    Checks the file's schema version first: an older file is migrated (see
    :data:`MIGRATIONS`), a newer one refused rather than written in a shape it does not know.
    """
    version = stored_version(con)
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"this database has schema version {version}, newer than this swingdial's "
            f"{SCHEMA_VERSION}: upgrade swingdial, or point SWINGDIAL_DUCKDB_PATH elsewhere"
        )
    con.execute(TABLES_SQL)
    con.execute(VIEWS_SQL)
    con.execute(
        "INSERT OR REPLACE INTO schema_info VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
    )


# --------------------------------------------------------------------------- writer side

# The Arrow shape of each batch table, from the one table specification (stream/tables.py).
# ``scored`` is wide: it fills posts, scores and authors (and runs) in one go.
SCORED_SCHEMA = merged_batch_schema(
    tables.POSTS, tables.SCORES, tables.AUTHORS, first=(pa.field("seq", pa.int64()),)
)
STANCES_SCHEMA = tables.STANCES.batch_schema()
ANNOTATIONS_SCHEMA = tables.ANNOTATIONS.batch_schema()
REJECTS_SCHEMA = tables.SINK_REJECTS.batch_schema()
MOMENTS_SCHEMA = tables.MOMENTS.batch_schema()
DEAD_LETTERS_SCHEMA = tables.DEAD_LETTERS.batch_schema()
OFFSETS_SCHEMA = tables.KAFKA_OFFSETS.batch_schema()


def arrow_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Column-wise Arrow table from row dicts (keys missing from a row become NULL).

    A key the schema does not know is an error, not a silently dropped column: row dicts
    and the table specification cannot drift apart. The rows of one table come from one
    row builder, so the first row's keys are checked (once per batch, off the per-row path).
    """
    unknown = rows[0].keys() - set(schema.names) if rows else set()
    if unknown:
        raise KeyError(f"columns not in the table specification: {sorted(unknown)}")
    return pa.table({name: [row.get(name) for row in rows] for name in schema.names}, schema=schema)


@dataclass
class Batch:
    """One micro-batch as Arrow tables, ready for :meth:`Store.write_batch`.

    ``scored`` is wide (one row per scored post: post, author, scores, cohort) so that every
    table is filled by a single set-based INSERT from it; ``stances`` has one row per
    (post, target). Both must already be de-duplicated on their keys.
    """

    scored: pa.Table
    stances: pa.Table
    annotations: pa.Table
    rejects: pa.Table
    moments: pa.Table
    offsets: pa.Table  # OFFSETS_SCHEMA: the next offset to read per (topic, partition)
    dead_letters: pa.Table | None = None  # DEAD_LETTERS_SCHEMA
    records: int = 0  # Kafka records in the batch
    in_batch_duplicates: int = 0  # scored posts dropped because the batch had them already
    lag: int | None = None
    started: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class BatchResult:
    records: int
    rows_written: int  # new posts
    duplicates: int
    annotations: int
    rejects: int
    latency_ms: float


_AUTHOR_IS_NEWER = "excluded.updated_at >= authors.updated_at"

# One micro-batch is stored by these statements, in order, in one transaction. Column
# lists come from the table specification; only the set logic is written here.
_INSERT_STATEMENTS = [
    """CREATE OR REPLACE TEMP TABLE _sink_new AS
    SELECT b.* FROM _b_scored b
    ANTI JOIN posts p ON p.run_id = b.run_id AND p.post_id = b.post_id""",
    tables.POSTS.insert_sql("_sink_new"),
    tables.SCORES.insert_sql("_sink_new"),
    tables.STANCES.insert_sql(
        "_b_stances st",
        tail="\nSEMI JOIN _sink_new n ON n.run_id = st.run_id AND n.post_id = st.post_id",
        prefix="st.",
    ),
    # The author's cohort is the one called on their latest post by event time, so the
    # result does not depend on delivery order; updated_at holds that post's event_time.
    tables.AUTHORS.insert_sql(
        """(
    SELECT *,
           row_number() OVER w AS rn,
           count(*) OVER (PARTITION BY run_id, author_id) AS n
    FROM _sink_new
    WINDOW w AS (PARTITION BY run_id, author_id ORDER BY event_time DESC, post_id DESC)
) WHERE rn = 1""",
        verb="INSERT INTO",
        tail="\nON CONFLICT (run_id, author_id) DO UPDATE SET\n"
        "    posts_seen = authors.posts_seen + excluded.posts_seen,\n"
        + "".join(
            f"    {name} = CASE WHEN {_AUTHOR_IS_NEWER} THEN excluded.{name} "
            f"ELSE authors.{name} END,\n"
            for name in ("handle", "bio", "followers", "cohort", "cohort_evidence")
        )
        + "    updated_at = greatest(authors.updated_at, excluded.updated_at)",
    ),
    """INSERT INTO runs
SELECT run_id,
       arg_max(event_id, seq),
       arg_max(source, seq),
       arg_max(model_version, seq),
       arg_max(CASE WHEN source LIKE 'replay:%'
                    THEN split_part(substr(source, 8), '#', 1) END, seq),
       now(), now()
FROM _b_scored GROUP BY run_id
ON CONFLICT (run_id) DO UPDATE SET
    last_seen_at  = excluded.last_seen_at,
    model_version = excluded.model_version""",
    tables.ANNOTATIONS.insert_sql("_b_annotations"),
    tables.MOMENTS.insert_sql("_b_moments"),
    tables.SINK_REJECTS.insert_sql("_b_rejects"),
    tables.DEAD_LETTERS.insert_sql("_b_dead_letters"),
    tables.KAFKA_OFFSETS.insert_sql(
        "_b_offsets",
        verb="INSERT INTO",
        tail="\nON CONFLICT (consumer_group, topic, partition) DO UPDATE SET\n"
        "    next_offset = excluded.next_offset,\n"
        "    updated_at  = excluded.updated_at",
    ),
]

_STATS_SQL = """
INSERT INTO sink_stats VALUES ($group, $pid, $started_at, 1, $records, $rows, $dups, $ann,
                               $rej, $records, $rows, $latency, $e2e, $lag, now())
ON CONFLICT (consumer_group) DO UPDATE SET
    pid                   = excluded.pid,
    started_at            = excluded.started_at,
    batches               = sink_stats.batches + 1,
    records               = sink_stats.records + excluded.records,
    rows_written          = sink_stats.rows_written + excluded.rows_written,
    duplicates            = sink_stats.duplicates + excluded.duplicates,
    annotations           = sink_stats.annotations + excluded.annotations,
    rejects               = sink_stats.rejects + excluded.rejects,
    last_batch_records    = excluded.last_batch_records,
    last_batch_rows       = excluded.last_batch_rows,
    last_batch_latency_ms = excluded.last_batch_latency_ms,
    last_e2e_latency_ms   = excluded.last_e2e_latency_ms,
    lag                   = excluded.lag,
    last_batch_at         = excluded.last_batch_at;
"""

_BATCH_VIEWS = (
    "_b_scored",
    "_b_stances",
    "_b_annotations",
    "_b_rejects",
    "_b_moments",
    "_b_dead_letters",
)


class Store:
    """The single writer: every batch (data + Kafka offsets + stats) is one transaction.

    Because the offsets of a batch commit together with its rows, a crash anywhere before
    COMMIT leaves the database exactly as after the previous batch, and the sink re-reads
    the same records on restart. Rows keyed by (run_id, post_id) are inserted only if new,
    so a record delivered twice (worker re-scoring, simulator re-send) is stored once.
    """

    def __init__(self, path: Path | str, consumer_group: str, lock_wait_s: float = 0.0) -> None:
        self.path = Path(path)
        self.group = consumer_group
        self.con = connect(self.path, lock_wait_s=lock_wait_s)
        self.started_at = datetime.now(UTC)
        # Test hook: called after every statement of a batch ran, just before COMMIT.
        self.before_commit: Callable[[], None] | None = None

    def close(self) -> None:
        self.con.close()

    def offsets(self) -> dict[tuple[str, int], int]:
        """Next offset to read per (topic, partition) for this consumer group."""
        rows = self.con.execute(
            "SELECT topic, partition, next_offset FROM kafka_offsets WHERE consumer_group = ?",
            [self.group],
        ).fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def write_batch(self, batch: Batch) -> BatchResult:
        """Store a batch and its offsets atomically; returns what was new."""
        con = self.con
        names = dict(
            zip(
                _BATCH_VIEWS,
                (
                    batch.scored,
                    batch.stances,
                    batch.annotations,
                    batch.rejects,
                    batch.moments,
                    batch.dead_letters
                    if batch.dead_letters is not None
                    else DEAD_LETTERS_SCHEMA.empty_table(),
                ),
                strict=True,
            )
        )
        for name, table in names.items():
            con.register(name, table)
        con.register("_b_offsets", batch.offsets)
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in _INSERT_STATEMENTS:
                if "$group" in statement:
                    con.execute(statement.replace("$group", "?"), [self.group])
                else:
                    con.execute(statement)
            rows = scalar(con, "SELECT count(*) FROM _sink_new")
            e2e = scalar(con, "SELECT avg(epoch(now()) - epoch(received_at)) * 1000 FROM _sink_new")
            con.execute("DROP TABLE _sink_new")
            annotations = batch.annotations.num_rows
            rejects = batch.rejects.num_rows
            duplicates = batch.scored.num_rows - rows + batch.in_batch_duplicates
            latency_ms = (time.perf_counter() - batch.started) * 1000
            con.execute(
                _STATS_SQL,
                {
                    "group": self.group,
                    "pid": os.getpid(),
                    "started_at": self.started_at,
                    "records": batch.records,
                    "rows": rows,
                    "dups": duplicates,
                    "ann": annotations,
                    "rej": rejects,
                    "latency": latency_ms,
                    "e2e": e2e,
                    "lag": batch.lag,
                },
            )
            if self.before_commit is not None:
                self.before_commit()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            for name in (*names, "_b_offsets"):
                con.unregister(name)
        return BatchResult(
            records=batch.records,
            rows_written=rows,
            duplicates=duplicates,
            annotations=annotations,
            rejects=rejects,
            latency_ms=latency_ms,
        )
