"""The read-only guard: DuckDB's parser decides, and nothing that writes gets through."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.query import QueryError, ReadOnlyError, ensure_read_only

WRITES = [
    "INSERT INTO posts VALUES (1)",
    "insert or ignore into scores select * from scores",
    "UPDATE scores SET cohort = 'x'",
    "DELETE FROM posts",
    "CREATE TABLE x AS SELECT 1",
    "CREATE TEMP TABLE x (a INT)",
    "CREATE OR REPLACE VIEW v_runs AS SELECT 1",
    "DROP TABLE posts",
    "DROP VIEW v_runs",
    "ALTER TABLE posts ADD COLUMN x INT",
    "COMMENT ON TABLE posts IS 'x'",
    "COPY posts TO '/tmp/x.csv'",
    "COPY posts FROM '/tmp/x.csv'",
    "ATTACH '/tmp/other.duckdb' AS other",
    "DETACH other",
    "SET threads = 1",
    "RESET threads",
    "USE memory",
    "PRAGMA threads = 1",
    "PRAGMA enable_profiling",
    "PRAGMA force_checkpoint",
    "EXPORT DATABASE '/tmp/dump'",
    "IMPORT DATABASE '/tmp/dump'",
    "CHECKPOINT",
    "FORCE CHECKPOINT",
    "CALL checkpoint()",
    "VACUUM",
    "ANALYZE",
    "INSTALL httpfs",
    "LOAD httpfs",
    "BEGIN TRANSACTION",
    "COMMIT",
    "PREPARE p AS DELETE FROM posts",
    "EXECUTE p",
    "CREATE SECRET s (TYPE s3)",
    "MERGE INTO posts USING posts AS p2 ON posts.post_id = p2.post_id WHEN MATCHED THEN DELETE",
    "WITH x AS (SELECT 1) INSERT INTO posts SELECT * FROM x",
    "EXPLAIN ANALYZE DELETE FROM posts",
    "explain analyze insert into posts select * from posts",
    "SELECT 1; DROP TABLE posts",
    "SELECT 1; SELECT 2; CHECKPOINT",
    "/* SELECT */ DELETE FROM posts",
    "-- just a comment\nDELETE FROM posts",
    "UPDATE EXTENSIONS",
]

READS = [
    "SELECT 1",
    "select count(*) from scores",
    "FROM posts LIMIT 1",
    "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
    "DESCRIBE posts",
    "SHOW TABLES",
    "SHOW ALL TABLES",
    "SUMMARIZE scores",
    "EXPLAIN SELECT * FROM posts",
    "EXPLAIN ANALYZE SELECT count(*) FROM posts",
    "PRAGMA table_info('posts')",
    "PRAGMA show_tables",
    "PRAGMA database_size",
    "CALL pragma_table_info('posts')",
    "CALL duckdb_tables()",
    "SELECT * FROM v_minute_cohort WHERE cohort = 'moderate'; SELECT 2",
    "-- comment\nSELECT 'DROP TABLE posts' AS not_a_drop",
    "SELECT * FROM posts WHERE text = 'delete from posts; drop table x'",
    "PIVOT scores ON cohort IN ('moderate', 'unknown') USING count(*)",
]


@pytest.mark.parametrize("sql", WRITES)
def test_writes_are_refused(sql: str) -> None:
    with pytest.raises(ReadOnlyError):
        ensure_read_only(sql)


@pytest.mark.parametrize("sql", READS)
def test_reads_are_allowed(sql: str) -> None:
    ensure_read_only(sql)


def test_syntax_error_is_a_query_error_not_a_refusal() -> None:
    with pytest.raises(QueryError):
        ensure_read_only("SELEC 1")
    with pytest.raises(QueryError):
        ensure_read_only("   ")


def test_message_names_the_statement_kind() -> None:
    with pytest.raises(ReadOnlyError, match=r"DELETE statements are not allowed.*read-only"):
        ensure_read_only("DELETE FROM posts")


identifiers = st.sampled_from(["posts", "scores", "authors", "runs", "kafka_offsets", "x"])
write_templates = st.sampled_from(
    [
        "INSERT INTO {t} SELECT * FROM {t}",
        "DELETE FROM {t}",
        "UPDATE {t} SET run_id = 'x'",
        "DROP TABLE {t}",
        "TRUNCATE {t}",
        "CREATE TABLE {t}_copy AS SELECT * FROM {t}",
        "ALTER TABLE {t} RENAME TO {t}_old",
        "COPY {t} TO '/tmp/{t}.parquet'",
        "EXPLAIN ANALYZE DELETE FROM {t}",
        "WITH c AS (SELECT 1) DELETE FROM {t}",
        "CHECKPOINT",
        "SET memory_limit = '1GB'",
    ]
)
padding = st.sampled_from(["", " ", "\n", "  \t", "/* hi */ ", "-- note\n"])
read_prefixes = st.lists(
    st.sampled_from(["SELECT 1", "SELECT * FROM posts", "DESCRIBE scores", "SHOW TABLES"]),
    max_size=3,
)


def _case(text: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flips[i % len(flips)] else c.lower() for i, c in enumerate(text))


@settings(max_examples=300, deadline=None)
@given(
    template=write_templates,
    table=identifiers,
    before=padding,
    reads=read_prefixes,
    flips=st.lists(st.booleans(), min_size=1, max_size=7),
    put_write_first=st.booleans(),
)
def test_generated_writes_are_refused_however_wrapped(
    template: str,
    table: str,
    before: str,
    reads: list[str],
    flips: list[bool],
    put_write_first: bool,
) -> None:
    write = before + template.format(t=table)
    # Vary keyword case but keep quoted strings intact.
    head, sep, rest = write.partition("'")
    write = _case(head, flips) + sep + rest
    statements = [write, *reads] if put_write_first else [*reads, write]
    sql = "; ".join(statements)
    try:
        duckdb.extract_statements(sql)
    except duckdb.Error:
        return  # not valid SQL at all: DuckDB would refuse it anyway
    with pytest.raises(ReadOnlyError):
        ensure_read_only(sql)


@settings(max_examples=100, deadline=None)
@given(reads=st.lists(st.sampled_from(READS[:12]), min_size=1, max_size=4), before=padding)
def test_generated_read_scripts_pass(reads: list[str], before: str) -> None:
    ensure_read_only(before + "; ".join(reads))
