"""SWINGDIAL_PSEUDONYMIZE: no handle, author id or bio reaches DuckDB or an export."""

from __future__ import annotations

from pathlib import Path

import duckdb

from stream.export import export
from stream.schema import CohortCall
from stream.sink import Sink
from stream.store import connect
from tests.factories import make_settings, records, scored_post


def test_pseudonymized_storage_and_export_hold_no_handles_or_bios(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pseudonymize=True)
    items = [scored_post(i) for i in range(30)]
    for i in (0, 11, 22):  # author a0's posts
        items[i] = items[i].model_copy(
            update={"cohort": CohortCall(label="lean_left", evidence=["bio: progressive"])}
        )
    sink = Sink(settings)
    sink.process(records(items, settings))
    sink.close()
    con = connect(settings.db_path, read_only=True)
    try:
        dump = " ".join(
            str(row)
            for table in ("posts", "authors", "scores", "stances")
            for row in con.execute(f"SELECT * FROM {table}").fetchall()
        )
        handles = con.execute("SELECT DISTINCT author_id, handle, bio FROM authors").fetchall()
        evidence = con.execute(
            "SELECT cohort_evidence FROM authors WHERE cohort = 'lean_left'"
        ).fetchall()
    finally:
        con.close()
    for i in range(11):
        assert f"user{i}'" not in dump and f"'a{i}'" not in dump and '"a{i}"' not in dump
    assert "progressive" not in dump
    assert len(handles) == 11  # the same author keeps one pseudonym
    assert all(a.startswith("u_") and h.startswith("u_") and not b for a, h, b in handles)
    assert any("bio not stored" in " ".join(e[0]) for e in evidence)
    # The key is kept (0600) so a restarted sink gives the same pseudonyms.
    key = settings.home / "pseudonym.key"
    assert key.stat().st_mode & 0o777 == 0o600
    out = tmp_path / "archive"
    export(settings, out)
    con = duckdb.connect()
    exported = con.execute(
        "SELECT string_agg(author_id) FROM read_parquet(?, hive_partitioning = true)",
        [str(out / "posts" / "**" / "*.parquet")],
    ).fetchone()[0]
    assert "user" not in exported and all(a.startswith("u_") for a in exported.split(","))


def test_without_the_option_handles_are_stored(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    sink = Sink(settings)
    sink.process(records([scored_post(1)], settings))
    sink.close()
    con = connect(settings.db_path, read_only=True)
    try:
        assert con.execute("SELECT handle FROM authors").fetchall() == [("user1",)]
    finally:
        con.close()
