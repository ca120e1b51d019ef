"""`swingdial sql / runs / export` through click's CliRunner on a real DuckDB file."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from stream.cli import main
from stream.config import Settings, get_settings
from tests.factories import make_settings, populated_db


@pytest.fixture
def cli_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    settings = make_settings(tmp_path)
    populated_db(settings, n=60, runs=("run-a", "run-b"))
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_sql_table_format(cli_settings: Settings) -> None:
    result = run("sql", "SELECT run_id, count(*) AS n FROM posts GROUP BY 1 ORDER BY 1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["run_id", "n"]
    assert lines[2].split() == ["run-a", "60"]
    assert lines[-1] == "(2 rows)"


def test_sql_csv_and_json(cli_settings: Settings) -> None:
    result = run("sql", "SELECT * FROM v_minute_cohort ORDER BY ALL", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert rows and {"run_id", "minute", "cohort", "net_sentiment", "ci_low"} <= rows[0].keys()
    result = run(
        "sql", "SELECT post_id, stances, event_time FROM v_sample_posts LIMIT 3", "-f", "json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data) == 3 and data[0]["event_time"].startswith("2024-08-13")
    # Nested values become JSON text in CSV.
    result = run("sql", "SELECT evidence FROM v_author_cohorts LIMIT 1", "-f", "csv")
    assert result.exit_code == 0 and "bio says" in result.output


def test_sql_params(cli_settings: Settings) -> None:
    result = run(
        "sql", "SELECT count(*) AS n FROM posts WHERE run_id = ?", "-p", "run-b", "-f", "csv"
    )
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["n", "60"]


def test_sql_parquet_needs_output(cli_settings: Settings, tmp_path: Path) -> None:
    result = run("sql", "SELECT 1", "--format", "parquet")
    assert result.exit_code == 2 and "--output" in result.output
    target = tmp_path / "out.parquet"
    result = run("sql", "SELECT * FROM scores", "--format", "parquet", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert pq.read_table(target).num_rows == 120


def test_sql_output_file(cli_settings: Settings, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    result = run("sql", "SELECT 42 AS answer", "-f", "json", "-o", str(target))
    assert result.exit_code == 0
    assert json.loads(target.read_text()) == [{"answer": 42}]


@pytest.mark.parametrize(
    "statement",
    ["DELETE FROM posts", "DROP TABLE scores", "SELECT 1; CHECKPOINT", "COPY posts TO 'x.csv'"],
)
def test_sql_write_statement_exits_2(cli_settings: Settings, statement: str) -> None:
    result = run("sql", statement)
    assert result.exit_code == 2
    assert "read-only" in result.output
    con = duckdb.connect(str(cli_settings.db_path), read_only=True)
    assert con.execute("SELECT count(*) FROM posts").fetchone() == (120,)
    con.close()


def test_sql_bad_query_exits_1(cli_settings: Settings) -> None:
    result = run("sql", "SELECT * FROM no_such_table")
    assert result.exit_code == 1 and "no_such_table" in result.output


def test_sql_without_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWINGDIAL_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("SWINGDIAL_QUERY_PORT", "1")
    get_settings.cache_clear()
    try:
        result = run("sql", "SELECT 1")
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1 and "has the sink run yet" in result.output


def test_runs_lists_runs(cli_settings: Settings) -> None:
    result = run("runs", "-f", "json")
    assert result.exit_code == 0, result.output
    runs = {r["run_id"]: r for r in json.loads(result.output)}
    assert set(runs) == {"run-a", "run-b"}
    assert runs["run-a"]["posts"] == 60 and runs["run-a"]["model_version"] == "test-model-1"


def test_export_hive_partitioned(cli_settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "archive"
    result = run("export", "--format", "parquet", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "posts: 120 rows" in result.output
    assert (out / "posts" / "event_id=test-event" / "run_id=run-a").is_dir()
    con = duckdb.connect()
    rows = con.execute(
        "SELECT run_id, count(*) FROM read_parquet(?, hive_partitioning = true) "
        "GROUP BY 1 ORDER BY 1",
        [str(out / "posts" / "**" / "*.parquet")],
    ).fetchall()
    assert rows == [("run-a", 60), ("run-b", 60)]
    # A non-empty folder is not overwritten by accident ...
    result = run("export", "--output", str(out), "--run", "run-a")
    assert result.exit_code == 1 and "--overwrite" in result.output
    # ... but can be, and --run limits the export.
    result = run("export", "--output", str(out), "--run", "run-a", "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (out / "posts" / "event_id=test-event" / "run_id=run-b").exists()
    result = run("export", "--output", str(tmp_path / "none"), "--run", "missing")
    assert result.exit_code == 1 and "no run" in result.output


def test_help_has_examples() -> None:
    for command in ("sql", "runs", "export", "replay", "sink", "annotate"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Examples:" in result.output
