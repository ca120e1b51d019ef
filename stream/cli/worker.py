"""`swingdial worker`: the faust scoring worker."""

from __future__ import annotations

import click

from stream.config import get_settings


@click.command("worker")
@click.option("--batch-size", type=int, default=None, help="Posts per model batch (default 64).")
@click.option("--within", type=float, default=None, help="Max seconds to wait to fill a batch.")
@click.option(
    "--web-port",
    type=int,
    default=None,
    help="Port of faust's web server, if SWINGDIAL_WORKER_WEB_ENABLED=true.",
)
@click.option("--loglevel", default="warning", show_default=True, help="faust log level.")
def worker_command(
    batch_size: int | None, within: float | None, web_port: int | None, loglevel: str
) -> None:
    """Score posts from the `posts` topic into `scores`; bad records go to `posts.dlq`.

    Runs a faust-streaming agent that micro-batches posts through the model (one encoder
    pass per batch, on a thread off the event loop). Start several to share the topic's
    partitions; stop one with SIGTERM and the others take its partitions at once
    (docs/operations.md, "Scale out and in").

    \b
    Examples:
      swingdial worker
      swingdial worker --batch-size 128 --within 1.0 --web-port 6067
    """
    from stream.worker import run_worker

    settings = get_settings()
    overrides = {
        "worker_batch_size": batch_size,
        "worker_batch_within_s": within,
        "worker_web_port": web_port,
    }
    settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
    run_worker(settings, loglevel=loglevel)


COMMANDS = [worker_command]
