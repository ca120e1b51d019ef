"""`swingdial simulate` and `swingdial ingest`: put posts on the ``posts`` topic.

Status lines go to stderr so that ``--dry-run -`` can stream records to stdout.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, Any

import click

from stream.config import Settings, get_settings
from stream.sources import SourceRecord
from stream.sources.producer import SendCounts, new_run_id, send_records, write_records


def _status(message: str) -> None:
    click.echo(message, err=True)


def _progress(counts: SendCounts) -> None:
    rate = counts.total / counts.elapsed_s if counts.elapsed_s else 0.0
    _status(f"  {counts.total} records ({counts.malformed} malformed), {rate:.0f}/s")


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # handled like Ctrl-C: stop producing, flush, print the summary


def _deliver(
    records: Iterable[SourceRecord], realtime: bool, dry_run: str | None, run_id: str
) -> SendCounts:
    """Send to Kafka, or write to a file for a dry run, then print the summary.

    SIGTERM (how `swingdial demo` stops the simulator) ends the run cleanly, so records
    already handed to the producer are flushed rather than lost.
    """
    settings = get_settings()
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return _deliver_to(settings, records, realtime, dry_run, run_id)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _deliver_to(
    settings: Settings,
    records: Iterable[SourceRecord],
    realtime: bool,
    dry_run: str | None,
    run_id: str,
) -> SendCounts:
    if dry_run:
        target = "stdout" if dry_run == "-" else dry_run
        _status(f"run id: {run_id}  (dry run: writing to {target})")
        opened: AbstractContextManager[IO[bytes]] = (
            nullcontext(sys.stdout.buffer) if dry_run == "-" else open(dry_run, "wb")  # noqa: SIM115
        )
        with opened as out:
            counts = write_records(out, records, realtime=realtime, progress=_progress)
    else:
        from kafka.errors import KafkaConnectionError, KafkaTimeoutError

        _status(f"run id: {run_id}  (to {settings.topic.posts} at {settings.kafka.bootstrap})")
        try:
            counts = send_records(settings, records, realtime=realtime, progress=_progress)
        except (KafkaConnectionError, KafkaTimeoutError) as exc:
            raise click.ClickException(
                f"no Kafka broker at {settings.kafka.bootstrap} ({exc}); start one with "
                "`swingdial broker start`, or use --dry-run FILE"
            ) from None
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(counts.kinds.items())) or "none"
    _status(
        f"{'stopped early' if counts.interrupted else 'done'}: "
        f"{counts.sent} posts sent, {counts.malformed} malformed"
        f"{f', {counts.failed} FAILED' if counts.failed else ''} ({kinds}) "
        f"in {counts.elapsed_s:.1f}s; run id: {run_id}"
    )
    if counts.failed:
        raise click.ClickException(f"{counts.failed} records could not be sent")
    if counts.interrupted:
        raise SystemExit(130)
    return counts


POSITIVE = click.FloatRange(min=0, min_open=True)


def dry_run_option(pacing: str = "") -> Callable:
    """``--dry-run FILE``: the records as JSONL instead of Kafka (both sources have it)."""
    return click.option(
        "--dry-run",
        metavar="FILE.jsonl",
        help=f"Write the records to FILE ('-' for stdout) instead of Kafka{pacing}.",
    )


@click.command("simulate")
@click.option(
    "--event", default="trump-musk-2024", show_default=True, help="Event id or YAML path."
)
@click.option(
    "--speed",
    type=float,
    default=60.0,
    show_default=True,
    help="Event seconds per wall second; 0 sends as fast as possible.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same posts.")
@click.option("--max-posts", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option(
    "--from-min", "start_min", type=click.FloatRange(min=0), default=0.0, help="Start minute."
)
@click.option("--to-min", "end_min", type=click.FloatRange(min=0), help="Stop minute (or the end).")
@click.option("--rate-scale", type=POSITIVE, default=1.0, help="Multiply the volume (load tests).")
@click.option("--run-id", help="Run id (default: <event>-<UTC time>-<hex>).")
@dry_run_option(", without pacing")
def simulate_command(
    event: str, speed: float, run_id: str | None, dry_run: str | None, **window: Any
) -> None:
    """Simulate the live audience of an event and send its posts to Kafka.

    Posts come from a scripted audience (moderates, lean-left, lean-right, media, spam)
    reacting to each moment of the event file, with ground truth in `truth`, plus reposts,
    exact duplicates and malformed records at the shares the event file sets. Event times
    are the real event's; --speed only sets how fast they are sent.

    \b
    Examples:
      swingdial simulate --event trump-musk-2024 --speed 60
      swingdial simulate --speed 0 --rate-scale 10          # load test, no pacing
      swingdial simulate --from-min 40 --to-min 60 --seed 7
      swingdial simulate --max-posts 500 --dry-run /tmp/posts.jsonl
    """
    from stream.events import is_event_id, load_event, load_event_file
    from stream.sources.simulator import simulate, validate_event_script

    try:
        if is_event_id(event):
            loaded = load_event(event, get_settings().events_dir)
        else:  # an operator's own file, named on the command line
            loaded = load_event_file(Path(event))
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    problems = validate_event_script(loaded)
    if problems:
        raise click.ClickException("event script is broken:\n  " + "\n  ".join(problems))
    run_id = run_id or new_run_id(loaded.id)
    # seed, max_posts, start_min, end_min, rate_scale: simulate()'s own parameter names
    records = simulate(loaded, run_id, speed=speed, **window)
    _deliver(records, realtime=speed > 0 and not dry_run, dry_run=dry_run, run_id=run_id)


@click.command("ingest")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "tsv"]),
    help="File format (default: from the extension; .gz is read too).",
)
@click.option("--id-col", "id", help="Post id column (default: id, id_str, post_id, ...).")
@click.option("--text-col", "text", help="Text column (default: text, full_text, content, ...).")
@click.option("--time-col", "time", help="Time column (default: created_at, timestamp, ...).")
@click.option("--author-col", "author_id", help="Author id column (default: author_id, ...).")
@click.option("--handle-col", "handle", help="Author handle column (default: username, ...).")
@click.option("--bio-col", "bio", help="Author bio column (default: author_bio, bio, ...).")
@click.option("--followers-col", "followers", help="Follower count column (followers_count).")
@click.option("--lang-col", "lang", help="Language column (default: lang).")
@click.option("--repost-col", "repost_of", help="Reposted post id column (default: repost_of).")
@click.option("--reply-col", "reply_to", help="Replied-to post id column (default: reply_to).")
@click.option(
    "--event-id", default="ingest", show_default=True, help="event_id for rows without one."
)
@click.option("--run-id", help="run_id for rows without one (default: <event-id>-<time>-<hex>).")
@click.option(
    "--override-ids", is_flag=True, help="Use --event-id/--run-id even where rows have their own."
)
@click.option("--realtime", is_flag=True, help="Pace by the posts' own timestamps.")
@click.option("--speed", type=POSITIVE, default=1.0, help="With --realtime: post s per wall s.")
@click.option("--strict", is_flag=True, help="Stop at the first bad row (no DLQ).")
@dry_run_option()
def ingest_command(
    path: Path,
    fmt: str | None,
    event_id: str,
    run_id: str | None,
    override_ids: bool,
    realtime: bool,
    speed: float,
    strict: bool,
    dry_run: str | None,
    **column_names: str | None,
) -> None:
    """Send real posts from a JSONL or CSV file to Kafka.

    Columns are found by their usual names; the --*-col options name them explicitly
    (dotted names reach into nested JSON, e.g. user.screen_name). Times may be ISO 8601,
    epoch seconds/ms, Twitter's created_at or common spreadsheet layouts; naive times are
    UTC.

    Bad rows are not dropped: they are sent as they are (mapped fields plus the original
    row) so the worker puts them on the dead-letter topic with the reason, and the summary
    counts them. --strict stops at the first bad row instead (a check before a run).

    \b
    Examples:
      swingdial ingest posts.jsonl --event-id trump-musk-2024
      swingdial ingest export.csv --text-col tweet --time-col date --author-col user
      swingdial ingest dump.jsonl.gz --handle-col user.screen_name --realtime --speed 30
      swingdial ingest export.csv --strict --dry-run /dev/null   # check a file
    """
    from stream.sources.files import BadRow, ColumnMap, detect_format, ingest

    try:
        file_format = fmt or detect_format(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None

    columns = ColumnMap(**column_names)  # the --*-col options, named as its fields
    run_id = run_id or new_run_id(event_id)
    records = ingest(
        path,
        event_id=event_id,
        run_id=run_id,
        fmt=file_format,  # type: ignore[arg-type]
        columns=columns,
        speed=speed if realtime else 0.0,
        strict=strict,
        override_ids=override_ids,
    )
    try:
        _deliver(records, realtime=realtime, dry_run=dry_run, run_id=run_id)
    except BadRow as exc:
        raise click.ClickException(f"bad row ({exc}); nothing after it was sent") from None


COMMANDS = [simulate_command, ingest_command]
