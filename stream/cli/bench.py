"""`swingdial bench`: benchmarks that print figures (docs/benchmarks.md keeps them)."""

from __future__ import annotations

import json
import platform
import subprocess
from typing import Any

import click

from stream.config import get_settings


def machine() -> dict[str, str]:
    """The CPU a figure was measured on (lscpu's model name and flags)."""
    info = {"cpus": "", "model": platform.processor(), "flags": ""}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            info["model"] = value.strip()
        elif key.strip() == "Flags":
            info["flags"] = value.strip()
        elif key.strip() == "CPU(s)":
            info["cpus"] = value.strip()
    return info


@click.group("bench")
def bench_group() -> None:
    """Benchmarks: real processes on loopback, figures printed (see docs/benchmarks.md).

    Run nothing else on the machine meanwhile.

    \b
    Examples:
      swingdial bench pipeline --posts 5000 --baseline-posts 300 --paced-fraction 0.6
      swingdial bench pipeline --stub-model --posts 20000      # the non-model ceiling
      swingdial bench pipeline --posts 100000 --rss-every 10000 --stub-model
      swingdial bench approval                # real tweets: does the dial follow truth?
      swingdial bench model
    """


@bench_group.command("pipeline")
@click.option("--posts", type=int, default=5000, show_default=True, help="Burst size.")
@click.option("--batch-size", type=int, default=None, help="Worker batch size.")
@click.option("--stub-model", is_flag=True, help="A fixed-output stub instead of the model.")
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Worker processes (one group)."
)
@click.option(
    "--threads", type=int, default=None, help="Model threads per worker (default: all cores)."
)
@click.option("--chunk-size", type=int, default=None, help="Texts per encoder call (sorted).")
@click.option(
    "--overlap/--no-overlap",
    default=None,
    help="Score the next batch while the last one is delivered "
    "(default: SWINGDIAL_WORKER_OVERLAP, off).",
)
@click.option(
    "--baseline-posts",
    type=int,
    default=0,
    help="Also measure the per-message pipeline (batch size 1) on this many posts, same run.",
)
@click.option(
    "--paced-fraction",
    type=float,
    default=0.0,
    help="Then offer this fraction of the measured burst rate, paced, for --seconds.",
)
@click.option("--seconds", type=float, default=40, show_default=True, help="Paced run length.")
@click.option("--rss-every", type=int, default=0, help="Print worker/sink RSS every N posts.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
def pipeline_command(
    posts: int,
    batch_size: int | None,
    stub_model: bool,
    workers: int,
    threads: int | None,
    chunk_size: int | None,
    overlap: bool | None,
    baseline_posts: int,
    paced_fraction: float,
    seconds: float,
    rss_every: int,
    as_json: bool,
) -> None:
    """Broker + worker + sink on loopback, fed by the simulator: posts/s, latency, RSS.

    \b
    Examples:
      swingdial bench pipeline --posts 5000 --baseline-posts 300 --paced-fraction 0.6
      swingdial bench pipeline --stub-model --posts 100000 --rss-every 10000 --json
      swingdial bench pipeline --posts 4000 --workers 2 --threads 1   # scale-out layout

    The per-message baseline is one worker, batch size 1, no overlap (the naive consumer),
    with --threads and --chunk-size as given.
    """
    from stream.bench import format_result, private_broker, run_pipeline

    say = (lambda _: None) if as_json else click.echo
    runs = []
    # What the burst and the paced run share (the baseline keeps one worker, batch 1).
    measured: dict[str, Any] = {
        "workers": workers,
        "threads": threads,
        "chunk_size": chunk_size,
        "batch_size": batch_size,
        "stub": stub_model,
        "overlap": overlap,
    }
    with private_broker(get_settings()) as settings:
        if baseline_posts:
            base = run_pipeline(
                settings,
                posts=baseline_posts,
                label="baseline",
                batch_size=1,
                stub=stub_model,
                threads=threads,
                chunk_size=chunk_size,
                overlap=False,
            )
            runs.append(base)
            say(format_result(base))
        burst = run_pipeline(
            settings, posts=posts, label="burst", sample_every=rss_every, echo=say, **measured
        )
        runs.append(burst)
        say(format_result(burst))
        if paced_fraction:
            rate = burst.end_to_end_posts_per_s * paced_fraction
            posts_paced = max(1, int(rate * seconds))
            paced = run_pipeline(settings, posts=posts_paced, label="paced", rate=rate, **measured)
            runs.append(paced)
            say(format_result(paced))
    summary: dict[str, Any] = {
        "machine": machine(),
        "end_to_end_posts_per_s": burst.end_to_end_posts_per_s,
        "runs": [r.as_dict() for r in runs],
    }
    if baseline_posts:
        summary["ratio_to_per_message"] = (
            burst.end_to_end_posts_per_s / runs[0].end_to_end_posts_per_s
        )
        say(f"burst / per-message: {summary['ratio_to_per_message']:.1f}x")
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        click.echo(f"machine: {summary['machine']['model']}, {summary['machine']['cpus']} CPUs")


@bench_group.command("approval")
@click.option("--minutes", type=int, default=60, show_default=True)
@click.option("--per-minute", type=int, default=15, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def approval_command(minutes: int, per_minute: int, as_json: bool) -> None:
    """Real labelled tweets (P-Stance validation, Trump) through the pipeline: how well the
    approval line follows the labels' per-minute truth (Pearson r).

    \b
    Example:
      swingdial bench approval --minutes 60 --per-minute 15
    """
    from stream.approval_check import run_check
    from stream.bench import private_broker

    with private_broker(get_settings()) as settings:
        result = run_check(settings, minutes, per_minute)
    result["machine"] = machine()
    if as_json:
        click.echo(json.dumps(result, indent=1, default=str))
        return
    click.echo(
        f"{result['minutes']} minutes, {result['posts']} posts, "
        f"{result['stance_posts_per_minute']:.1f} stance-taking posts per minute\n"
        f"approval line vs truth:      r = {result['r_approval']:.3f}\n"
        f"mean net stance vs truth:    r = {result['r_mean_net_stance']:.3f}\n"
        f"truth range {result['truth_range'][0]:+.2f}..{result['truth_range'][1]:+.2f}, "
        f"approval range {result['approval_range'][0]:+.2f}..{result['approval_range'][1]:+.2f}"
    )


@bench_group.command("model")
@click.option("--posts", type=int, default=2048, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
def model_command(posts: int, batch_size: int) -> None:
    """Model-only posts/s (no Kafka).

    \b
    Example:
      swingdial bench model --posts 2048 --batch-size 64
    """
    from models.bench import run as run_model_bench

    run_model_bench(posts=posts, batch_size=batch_size, echo=click.echo)


COMMANDS = [bench_group]
