"""`swingdial sql`, `export`, `replay`, `runs`: reading the database (while the sink runs, too)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
from tabulate import tabulate

from stream.config import get_settings

FORMATS = ("table", "csv", "json", "parquet")
MAX_CELL = 60

# Exit codes: 1 = the query failed, 2 = refused (writes) or bad usage.
EXIT_FAILED = 1
EXIT_REFUSED = 2


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, list | dict | tuple):
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def format_table(table: pa.Table) -> str:
    """An aligned text table (tabulate's "simple" style; long cells cut) and a row count."""
    names = table.column_names
    columns = [column.to_pylist() for column in table.columns]
    rows = [[_cell(v) for v in row] for row in zip(*columns, strict=True)] if names else []
    text = tabulate(rows, headers=names, tablefmt="simple", disable_numparse=True)
    return f"{text}\n({len(rows)} row{'s' if len(rows) != 1 else ''})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def write_result(table: pa.Table, fmt: str, output: Path | None) -> None:
    """Print or save a result in one of :data:`FORMATS`."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if output is None:
            raise click.UsageError("--format parquet needs --output FILE")
        pq.write_table(table, output)
        click.echo(f"wrote {table.num_rows} rows to {output}", err=True)
        return
    if fmt == "csv":
        text = format_csv(table)
    elif fmt == "json":
        text = json.dumps(table.to_pylist(), default=_jsonable, ensure_ascii=False, indent=1)
    else:
        text = format_table(table)
    if output is None:
        click.echo(text)
    else:
        Path(output).write_text(text if text.endswith("\n") else text + "\n")
        click.echo(f"wrote {table.num_rows} rows to {output}", err=True)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict | tuple | bytes):
        return json.dumps(value, default=_jsonable, ensure_ascii=False)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def format_csv(table: pa.Table) -> str:
    """RFC 4180 CSV with a plain header; nested values as JSON text, NULL as empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.column_names)
    for batch in table.to_batches(max_chunksize=10_000):
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            writer.writerow([_csv_cell(v) for v in row])
    return buffer.getvalue()


def _run_query(sql: str, params: list[Any] | None = None) -> pa.Table:
    """Run read-only SQL, turning the read path's errors into messages and exit codes."""
    from stream.query import DatabaseLockedError, QueryClient, QueryError, ReadOnlyError

    settings = get_settings()
    try:
        with QueryClient(settings) as client:
            return client.sql(sql, params)
    except ReadOnlyError as exc:
        click.echo(f"Error: read-only: {exc}", err=True)
        sys.exit(EXIT_REFUSED)
    except (QueryError, DatabaseLockedError, FileNotFoundError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


_format_option = click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format; parquet needs --output.",
)
_output_option = click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)


@click.command("sql")
@click.argument("query")
@_format_option
@_output_option
@click.option(
    "--param", "-p", "params", multiple=True, help="Value for a ? placeholder (repeatable)."
)
def sql_command(query: str, fmt: str, output: Path | None, params: tuple[str, ...]) -> None:
    """Run read-only SQL against the swingdial database.

    Works while the sink runs (through its query server) and after it stopped (by opening
    the file read-only). Statements that would write are refused with exit code 2.
    Tables and views are described in docs/schema.md.

    \b
    Examples:
      swingdial sql "SELECT count(*) FROM scores"
      swingdial sql "SELECT * FROM v_minute_cohort WHERE cohort = 'moderate'" -f csv
      swingdial sql "SELECT * FROM v_runs" --format json
      swingdial sql "SELECT * FROM posts WHERE run_id = ?" -p my-run -f parquet -o posts.parquet
    """
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet needs --output FILE")
    table = _run_query(query, list(params) or None)
    write_result(table, fmt, output)


@click.command("runs")
@_format_option
@_output_option
def runs_command(fmt: str, output: Path | None) -> None:
    """List the runs stored so far, newest first, with their post counts.

    \b
    Examples:
      swingdial runs
      swingdial runs --format json
    """
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet needs --output FILE")
    table = _run_query(
        "SELECT run_id, event_id, source, replay_of, model_version, posts, authors, minutes, "
        "first_event_time, last_event_time, last_seen_at FROM v_runs "
        "ORDER BY last_seen_at DESC, run_id"
    )
    write_result(table, fmt, output)


@click.command("export")
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(("parquet", "csv")),
    default="parquet",
    show_default=True,
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write (DIR/<table>/event_id=…/run_id=…/).",
)
@click.option("--run", "run_id", help="Only this run (default: every run).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
def export_command(fmt: str, output: Path, run_id: str | None, overwrite: bool) -> None:
    """Archive posts, scores, stances and authors as a hive-partitioned folder.

    Partitioned by event_id and run_id; posts keep the raw validated post, so a run can be
    replayed or re-scored from the archive. Works while the sink runs.

    \b
    Examples:
      swingdial export --output archive/
      swingdial export --format parquet --output archive/ --run trump-musk-2024-r1
      duckdb -c "SELECT count(*) FROM read_parquet('archive/posts/**/*.parquet')"
    """
    from stream.export import export
    from stream.query import DatabaseLockedError, QueryError

    try:
        counts = export(get_settings(), output, run_id=run_id, fmt=fmt, overwrite=overwrite)
    except (LookupError, FileExistsError, QueryError, DatabaseLockedError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    for table, rows in counts.items():
        click.echo(f"{table}: {rows} rows")
    click.echo(f"wrote {output}", err=True)


@click.command("replay")
@click.option("--run", "run_id", required=True, help="The archived run to replay.")
@click.option("--speed", type=float, default=1.0, show_default=True, help="Time compression.")
@click.option("--as-fast-as-possible", "fast", is_flag=True, help="No pacing at all.")
@click.option("--model-tag", help="Label for the model this replay is for (goes in the run id).")
@click.option("--run-id", "new_run_id", help="Run id of the replay (default: derived).")
def replay_command(
    run_id: str, speed: float, fast: bool, model_tag: str | None, new_run_id: str | None
) -> None:
    """Send an archived run through Kafka again as a new run (for the worker to re-score).

    Posts are sent in their original event-time order with the original gaps divided by
    --speed. The new run records where it came from (runs.replay_of).

    \b
    Examples:
      swingdial replay --run trump-musk-2024-r1 --speed 10
      swingdial replay --run trump-musk-2024-r1 --as-fast-as-possible --model-tag hf-roberta
      swingdial sql "SELECT run_id, replay_of, posts FROM v_runs"
    """
    from stream.query import DatabaseLockedError, QueryError
    from stream.sources.replay import replay_run

    if speed <= 0:
        raise click.BadParameter("must be > 0", param_hint="--speed")
    settings = get_settings()

    def progress(counts: Any) -> None:
        click.echo(f"  sent {counts.sent} posts in {counts.elapsed_s:.0f}s", err=True)

    try:
        result = replay_run(
            settings,
            run_id,
            speed=speed,
            as_fast_as_possible=fast,
            new_run_id=new_run_id,
            model_tag=model_tag,
            progress=progress,
        )
    except (LookupError, ValueError, QueryError, DatabaseLockedError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    note = " (interrupted)" if result.interrupted else ""
    click.echo(f"replayed {result.sent} posts of {run_id} as run {result.run_id}{note}")
    if result.failed:
        click.echo(f"Error: {result.failed} sends failed", err=True)
        sys.exit(EXIT_FAILED)


COMMANDS = [sql_command, export_command, replay_command, runs_command]
