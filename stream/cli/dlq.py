"""`swingdial dlq`: what the worker refused, and sending fixed records back."""

from __future__ import annotations

from pathlib import Path

import click

from stream.cli.query import write_result
from stream.config import get_settings
from stream.query import QueryClient, QueryError


@click.group("dlq", invoke_without_command=True)
@click.pass_context
def dlq_group(ctx: click.Context) -> None:
    """Dead letters: records the worker refused, counted by reason.

    \b
    Examples:
      swingdial dlq                              # counts by reason
      swingdial dlq list --reason event_id --limit 5
      swingdial dlq list -f json > dead.jsonl    # edit, then:
      swingdial dlq replay --file dead.jsonl
      swingdial dlq replay --reason "scoring failed"   # resend as stored
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(counts_command)


@dlq_group.command("counts")
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
def counts_command(fmt: str = "table") -> None:
    """Dead letters per kind of reason.

    \b
    Example:
      swingdial dlq counts -f json
    """
    with QueryClient(get_settings()) as client:
        try:
            from stream.dlq import reason_counts

            write_result(reason_counts(client), fmt, None)
        except QueryError as exc:
            raise click.ClickException(str(exc)) from None


@dlq_group.command("list")
@click.option("--reason", help="Reasons starting with this (a kind from `dlq counts`).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def list_command(reason: str | None, limit: int, fmt: str) -> None:
    """The newest dead letters (JSON includes the record's bytes as `raw`).

    \b
    Examples:
      swingdial dlq list --reason event_id --limit 5
      swingdial dlq list -f json > dead.jsonl
    """
    from stream.dlq import list_dead_letters

    with QueryClient(get_settings()) as client:
        try:
            table = list_dead_letters(client, reason, limit, with_raw=fmt == "json")
        except QueryError as exc:
            raise click.ClickException(str(exc)) from None
    if fmt == "json":
        import json

        for row in table.to_pylist():
            row["raw"] = row["raw"].decode("utf-8", "replace") if row["raw"] else None
            row["key"] = row["key"].decode("utf-8", "replace") if row["key"] else None
            click.echo(json.dumps(row, default=str, ensure_ascii=False))
    else:
        write_result(table, fmt, None)


@dlq_group.command("replay")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Fixed records, JSONL: posts, or rows of `dlq list -f json` with `raw` edited.",
)
@click.option("--reason", help="Without --file: resend stored dead letters of this reason.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=1000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Say how many would be sent; send nothing.")
def replay_command(path: Path | None, reason: str | None, limit: int, dry_run: bool) -> None:
    """Send records back to `posts`; the worker checks them again (bad ones return here).

    \b
    Examples:
      swingdial dlq replay --file dead.jsonl --dry-run
      swingdial dlq replay --reason "scoring failed"
    """
    from stream.dlq import file_records, replay, stored_records

    settings = get_settings()
    if path is None and reason is None:
        raise click.UsageError("give --file (fixed records) or --reason (resend as stored)")
    try:
        if path is not None:
            records = list(file_records(path))
        else:
            with QueryClient(settings) as client:
                records = list(stored_records(client, reason, limit))
    except (QueryError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    sent = replay(settings, records, dry_run=dry_run)
    verb = "would send" if dry_run else "sent"
    click.echo(f"{verb} {sent} record{'s' if sent != 1 else ''} to {settings.topic.posts}")


COMMANDS = [dlq_group]
