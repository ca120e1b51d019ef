"""The factories in tests/factories.py produce records the sink accepts."""

from __future__ import annotations

from pathlib import Path

from stream.store import connect
from tests.factories import make_settings, populated_db


def test_factories_produce_storable_records(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    populated_db(settings, n=30)
    con = connect(settings.db_path, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM posts").fetchone() == (30,)
        assert con.execute("SELECT count(*) FROM stances").fetchone() == (60,)
        assert con.execute("SELECT count(*) FROM annotations").fetchone() == (3,)
        assert con.execute("SELECT count(*) FROM sink_rejects").fetchone() == (1,)
    finally:
        con.close()
