"""The one table specification (stream/tables.py) drives the DDL, the batch schemas, the
INSERT column lists and the docs' column tables; these tests hold them together."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from stream import store, tables
from stream.sink import scored_rows
from tests.factories import scored_post


def test_a_new_database_has_exactly_the_specified_columns(tmp_path):
    con = store.connect(tmp_path / "db.duckdb")
    for table in tables.TABLES:
        described = con.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = ? ORDER BY ordinal_position",
            [table.name],
        ).fetchall()
        spelled = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}
        assert [(n, spelled.get(t, t), null == "NO") for n, t, null in described] == [
            (c.name, c.type, c.not_null or c.name in table.primary_key) for c in table.columns
        ], table.name


def test_docs_column_tables_match_the_specification():
    text = tables.DOCS.read_text()
    assert tables.docs_markdown(text) == text, "run `python -m stream.tables --write-docs`"
    for table in tables.TABLES:
        assert f"<!-- columns:{table.name} -->" in text, table.name


def test_docs_markdown_rewrites_a_stale_block():
    stale = "intro\n<!-- columns:stances -->\n| run_id | old |\n<!-- /columns -->\nafter\n"
    fresh = tables.docs_markdown(stale)
    assert "| net_stance | FLOAT NOT NULL |" in fresh and "| old |" not in fresh
    assert fresh.startswith("intro\n") and fresh.endswith("after\n")


def test_the_sinks_rows_fill_every_batch_column_and_no_other():
    row, stance_rows = scored_rows(scored_post(3), seq=0)
    assert set(row) == set(store.SCORED_SCHEMA.names)
    assert set(stance_rows[0]) == set(store.STANCES_SCHEMA.names)


def test_a_row_key_outside_the_specification_is_an_error_not_a_lost_column():
    with pytest.raises(KeyError, match="scroe"):
        store.arrow_table([{"target": "x", "scroe": 1.0}], store.STANCES_SCHEMA)


def test_columns_the_insert_computes_are_not_in_the_batch():
    assert "stored_at" not in store.DEAD_LETTERS_SCHEMA.names
    assert "stored_at" not in tables.SCORES.batch_schema().names
    assert store.OFFSETS_SCHEMA.names == ["topic", "partition", "next_offset"]


def test_inserts_name_their_columns_so_an_older_files_order_does_not_matter(tmp_path):
    """An older file whose table lists the same columns in another order still takes
    the batch's values in the right columns."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE moments (title VARCHAR NOT NULL, event_id VARCHAR NOT NULL, "
        "moment_id VARCHAR NOT NULL, description VARCHAR, topic VARCHAR, "
        "until_time TIMESTAMPTZ, at_time TIMESTAMPTZ NOT NULL, PRIMARY KEY (event_id, moment_id))"
    )
    batch = store.arrow_table(
        [{"event_id": "e", "moment_id": "m1", "title": "Opening", "topic": "economy"}],
        store.MOMENTS_SCHEMA,
    ).set_column(2, "at_time", pa.array([0], pa.timestamp("us", tz="UTC")))
    con.register("_b_moments", batch)
    con.execute(tables.MOMENTS.insert_sql("_b_moments"))
    assert con.execute("SELECT title, topic, moment_id FROM moments").fetchall() == [
        ("Opening", "economy", "m1")
    ]


def test_a_table_with_a_repeated_column_is_refused():
    column = tables.Column("a", "VARCHAR", "a")
    with pytest.raises(ValueError, match="repeated"):
        tables.Table("t", (column, column), ("a",))
