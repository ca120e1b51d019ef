"""`swingdial sink` (the one DuckDB writer) and `swingdial annotate` (notes via Kafka)."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta

import click

from stream.config import Settings, get_settings


@click.command("sink")
@click.option(
    "--no-serve",
    is_flag=True,
    help="Do not run the read-only query server (then nothing can read the file meanwhile).",
)
def sink_command(no_serve: bool) -> None:
    """Write scored posts and annotations from Kafka into DuckDB, exactly once.

    The sink is the only process that writes the database. While it runs it also answers
    read-only SQL over Arrow Flight on SWINGDIAL_QUERY_HOST:SWINGDIAL_QUERY_PORT, which is
    how `swingdial sql` and the dashboard read. Stop it with Ctrl-C or SIGTERM; it finishes
    the batch in hand first.

    \b
    Examples:
      swingdial sink
      swingdial sink --no-serve
      SWINGDIAL_SINK_BATCH_SIZE=500 SWINGDIAL_SINK_FLUSH_S=0.5 swingdial sink
    """
    import duckdb

    from stream.query import QueryServerError
    from stream.sink import run_sink

    settings = get_settings()
    try:
        totals = run_sink(settings, serve=not no_serve)
    except QueryServerError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except duckdb.IOException as exc:  # another process holds the file
        click.echo(
            f"Error: cannot open {settings.db_path} for writing "
            f"(waited {settings.sink.lock_wait_s:g}s, SWINGDIAL_SINK_LOCK_WAIT_S): {exc}",
            err=True,
        )
        sys.exit(1)
    click.echo(
        f"sink stopped: {totals['batches']} batches, {totals['records']} records, "
        f"{totals['rows_written']} new posts, {totals['rejects']} rejected",
        err=True,
    )


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO time like 2024-08-13T00:45:00Z", param_hint="--at"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _latest_time(settings: Settings, event_id: str | None, run_id: str | None) -> datetime:
    """Newest stored event_time of the run (or event); now if nothing is stored."""
    from stream.query import QueryClient

    where, params = [], []
    if run_id:
        where.append("run_id = ?")
        params.append(run_id)
    if event_id:
        where.append("event_id = ?")
        params.append(event_id)
    sql = "SELECT max(event_time) AS t FROM posts" + (
        " WHERE " + " AND ".join(where) if where else ""
    )
    try:
        with QueryClient(settings) as client:
            value = client.sql(sql, params or None).column("t")[0].as_py()
    except Exception:  # noqa: BLE001 - no database yet: annotate "now"
        value = None
    return value.astimezone(UTC) if value else datetime.now(UTC)


def _event_of_run(settings: Settings, run_id: str) -> str | None:
    from stream.query import QueryClient

    try:
        with QueryClient(settings) as client:
            rows = client.sql("SELECT event_id FROM runs WHERE run_id = ?", [run_id]).to_pylist()
    except Exception:  # noqa: BLE001
        return None
    return rows[0]["event_id"] if rows else None


@click.command("annotate")
@click.argument("text")
@click.option("--at", "at_text", help="Event time of the note (ISO 8601, UTC if no zone).")
@click.option("--minute", type=float, help="Minutes after the event's start (needs the event).")
@click.option("--event", "event_id", help="Event id (stream/events/<id>.yaml).")
@click.option("--run-id", help="Pin the note to one run (default: every run of the event).")
@click.option("--author", default="analyst", show_default=True)
def annotate_command(
    text: str,
    at_text: str | None,
    minute: float | None,
    event_id: str | None,
    run_id: str | None,
    author: str,
) -> None:
    """Pin a note to the timeline. It goes to the annotations topic and the sink stores it.

    Without --at or --minute the note is placed at the newest post stored for the run (or
    event), i.e. "what just happened" during a live run.

    \b
    Examples:
      swingdial annotate "Musk mentions the border" --minute 45 --event trump-musk-2024
      swingdial annotate "audio drops" --at 2024-08-13T00:45:00Z --run-id trump-musk-2024-r1
      swingdial annotate "big laugh"      # at the newest stored post
    """
    from stream import kafka
    from stream.events import load_event
    from stream.schema import Annotation

    settings = get_settings()
    if at_text and minute is not None:
        raise click.UsageError("give --at or --minute, not both")
    if event_id is None and run_id:
        event_id = _event_of_run(settings, run_id)
    if at_text:
        at = _parse_time(at_text)
    elif minute is not None:
        if not event_id:
            raise click.UsageError("--minute needs --event (or a --run-id the sink has seen)")
        try:
            event = load_event(event_id, settings.events_dir)
        except FileNotFoundError as exc:
            raise click.UsageError(str(exc)) from None
        start = event.start if event.start.tzinfo else event.start.replace(tzinfo=UTC)
        at = start.astimezone(UTC) + timedelta(minutes=minute)
    else:
        at = _latest_time(settings, event_id, run_id)
    note = Annotation(
        id=uuid.uuid4().hex,
        event_id=event_id,
        run_id=run_id,
        at=at,
        text=text,
        author=author,
        created_at=datetime.now(UTC),
    )
    try:
        producer = kafka.producer(settings, client_id="swingdial-annotate")
    except Exception as exc:  # noqa: BLE001 - kafka-python raises several kinds
        click.echo(f"Error: cannot reach Kafka at {settings.kafka.bootstrap}: {exc}", err=True)
        sys.exit(1)
    try:
        future = producer.send(
            settings.topic.annotations,
            key=note.id.encode(),
            value=note.model_dump_json(exclude_none=True).encode(),
        )
        meta = future.get(timeout=30)
    finally:
        producer.close()
    click.echo(
        f"annotation {note.id} at {note.at.isoformat()} -> "
        f"{meta.topic}[{meta.partition}]@{meta.offset}"
    )


COMMANDS = [sink_command, annotate_command]
