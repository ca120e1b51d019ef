"""The DuckDB schema, and opening the database.

Only the sink writes (see ``stream/sink.py``); everything else reads through
``stream/query.py``. Columns used to group charts (minute, cohort) are stored on the score
rows themselves so the dashboard's per-minute queries need no joins.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

SCHEMA_VERSION = 1

TABLES_SQL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        VARCHAR PRIMARY KEY,
    event_id      VARCHAR NOT NULL,
    source        VARCHAR,
    model_version VARCHAR,
    replay_of     VARCHAR,
    first_seen_at TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS posts (
    run_id      VARCHAR NOT NULL,
    post_id     VARCHAR NOT NULL,
    event_id    VARCHAR NOT NULL,
    event_time  TIMESTAMPTZ NOT NULL,
    minute      TIMESTAMPTZ NOT NULL,
    author_id   VARCHAR NOT NULL,
    text        VARCHAR NOT NULL,
    lang        VARCHAR,
    repost_of   VARCHAR,
    reply_to    VARCHAR,
    source      VARCHAR,
    raw         JSON NOT NULL,          -- the post exactly as validated: replay reads this
    truth       JSON,                   -- simulator ground truth (never read by the scorer)
    received_at TIMESTAMPTZ,
    PRIMARY KEY (run_id, post_id)
);
CREATE TABLE IF NOT EXISTS authors (
    run_id          VARCHAR NOT NULL,
    author_id       VARCHAR NOT NULL,
    handle          VARCHAR NOT NULL,
    bio             VARCHAR,
    followers       BIGINT,
    cohort          VARCHAR NOT NULL,
    cohort_evidence VARCHAR[],
    posts_seen      BIGINT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, author_id)
);
CREATE TABLE IF NOT EXISTS scores (
    run_id        VARCHAR NOT NULL,
    post_id       VARCHAR NOT NULL,
    event_time    TIMESTAMPTZ NOT NULL,
    minute        TIMESTAMPTZ NOT NULL,
    author_id     VARCHAR NOT NULL,
    cohort        VARCHAR NOT NULL,
    sentiment     VARCHAR NOT NULL,
    p_negative    FLOAT NOT NULL,
    p_neutral     FLOAT NOT NULL,
    p_positive    FLOAT NOT NULL,
    net_sentiment FLOAT NOT NULL,       -- p_positive - p_negative, in [-1, 1]
    emotion       VARCHAR,
    topic         VARCHAR,
    model_version VARCHAR NOT NULL,
    received_at   TIMESTAMPTZ,          -- when the worker took the post from Kafka
    scored_at     TIMESTAMPTZ NOT NULL,
    stored_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, post_id)
);
CREATE TABLE IF NOT EXISTS stances (
    run_id    VARCHAR NOT NULL,
    post_id   VARCHAR NOT NULL,
    target    VARCHAR NOT NULL,
    minute    TIMESTAMPTZ NOT NULL,
    cohort    VARCHAR NOT NULL,
    label     VARCHAR NOT NULL,
    p_favor   FLOAT NOT NULL,
    p_against FLOAT NOT NULL,
    p_none    FLOAT NOT NULL,
    net_stance FLOAT NOT NULL,          -- p_favor - p_against, in [-1, 1]
    PRIMARY KEY (run_id, post_id, target)
);
CREATE TABLE IF NOT EXISTS moments (
    event_id    VARCHAR NOT NULL,
    moment_id   VARCHAR NOT NULL,
    at_time     TIMESTAMPTZ NOT NULL,
    until_time  TIMESTAMPTZ,
    title       VARCHAR NOT NULL,
    topic       VARCHAR,
    description VARCHAR,
    PRIMARY KEY (event_id, moment_id)
);
CREATE TABLE IF NOT EXISTS annotations (
    annotation_id VARCHAR PRIMARY KEY,
    event_id      VARCHAR,
    run_id        VARCHAR,
    at_time       TIMESTAMPTZ NOT NULL,
    text          VARCHAR NOT NULL,
    author        VARCHAR NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS kafka_offsets (
    consumer_group VARCHAR NOT NULL,
    topic          VARCHAR NOT NULL,
    partition      INTEGER NOT NULL,
    next_offset    BIGINT NOT NULL,      -- the first offset NOT yet stored
    updated_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);
CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR);
"""


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the database; the writer also creates the schema."""
    path = Path(path)
    if read_only:
        if not path.exists():
            raise FileNotFoundError(f"no swingdial database at {path} (has the sink run yet?)")
        return duckdb.connect(str(path), read_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    init_schema(con)
    return con


def init_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(TABLES_SQL)
    con.execute(
        "INSERT OR REPLACE INTO schema_info VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
    )
