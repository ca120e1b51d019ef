"""Every ```sql example in docs/schema.md runs (read-only) against a sink-written database."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream.query import QueryClient, ensure_read_only
from stream.sink import Sink
from stream.store import VIEWS, connect
from tests.factories import make_settings, populated_db, records, scored_post

DOC = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


@pytest.fixture(scope="module")
def db_settings(tmp_path_factory: pytest.TempPathFactory):
    settings = make_settings(tmp_path_factory.mktemp("docs"))
    populated_db(settings, n=80, runs=("run-a",))
    sink = Sink(settings)
    replay = [scored_post(i, "run-a.replay", source="replay:run-a") for i in range(80)]
    sink.process(records(replay, settings, start_offset=5000))
    sink.close()
    return settings


def test_doc_has_examples() -> None:
    assert len(BLOCKS) >= 15


@pytest.mark.parametrize("sql", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_doc_example_runs(db_settings, sql: str) -> None:
    ensure_read_only(sql)
    with QueryClient(db_settings, mode="direct") as client:
        client.sql(sql)


def test_every_table_column_and_view_is_documented(db_settings) -> None:
    text = DOC.read_text()
    con = connect(db_settings.db_path, read_only=True)
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE database_name = current_database()"
        ).fetchall()
    finally:
        con.close()
    missing = [
        f"{table}.{column}"
        for table, column in columns
        if f"`{table}`" not in text or not re.search(rf"\b{re.escape(column)}\b", text)
    ]
    assert not missing, f"undocumented: {missing}"
    for view in VIEWS:
        assert f"### `{view}`" in text
    # The views' examples really return rows on a populated database.
    with QueryClient(db_settings, mode="direct") as client:
        for view in VIEWS:
            assert client.sql(f"SELECT * FROM {view} LIMIT 1").num_rows == 1, view
