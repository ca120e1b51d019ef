"""After the event, the file opens with the plain duckdb package, as docs/schema.md says."""

from __future__ import annotations

import duckdb
import pytest

from tests.factories import make_settings, populated_db


def test_plain_duckdb_reads_a_sink_written_file_read_only(tmp_path):
    path = populated_db(make_settings(tmp_path), n=50)
    con = duckdb.connect(str(path), read_only=True)
    try:
        runs = con.execute("SELECT run_id FROM v_runs").fetchall()
        assert runs == [("run-a",)]
        assert con.execute("SELECT count(*) FROM posts").fetchone()[0] == 50
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DELETE FROM posts")
    finally:
        con.close()
