"""`swingdial score`: batch scoring of a JSONL file, without Kafka, with the worker's model."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import IO

import click

from models.config import PRECISIONS
from stream.config import get_settings


def _read_lines(handle: IO[str]) -> Iterator[tuple[int, dict | None, str]]:
    """Yield (line number, record or None, problem) for every non-blank line."""
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"not valid JSON ({exc.msg})"
            continue
        if not isinstance(record, dict):
            yield number, None, "not a JSON object"
        elif "id" not in record or not isinstance(record.get("text"), str):
            yield number, None, "needs an 'id' and a string 'text'"
        elif not record["text"].strip():
            yield number, None, "'text' is blank"
        else:
            yield number, record, ""


JSONL_FILE = click.Path(dir_okay=False, allow_dash=True)


@click.command("score")
@click.option(
    "--input", "input_path", type=JSONL_FILE, required=True, help="{id, text} JSONL ('-': stdin)"
)
@click.option("--output", "output_path", type=JSONL_FILE, default="-", help="JSONL ('-': stdout).")
@click.option(
    "--targets",
    default=None,
    help='Comma-separated stance targets (default: "Donald Trump,Kamala Harris,Elon Musk").',
)
@click.option(
    "--batch-size",
    type=int,
    default=256,
    show_default=True,
    help="Posts per scorer call (sorted by length into encoder chunks inside).",
)
@click.option(
    "--precision",
    type=click.Choice(list(PRECISIONS)),
    default=None,
    help="Encoder runtime/precision (default: settings' score_precision, 'auto').",
)
def score_command(
    input_path: str, output_path: str, targets: str | None, batch_size: int, precision: str | None
) -> None:
    """Score posts from a JSONL file into JSONL, with the same model code as the worker.

    Each output line: {"id", "sentiment": {"label", "scores": {negative, neutral,
    positive}}, "stance": {TARGET: {"label", "scores": {favor, against, none}}}, "emotion",
    "topic", "model_version"}. Lines that are not valid are reported on stderr with their
    line number and skipped; every valid line is still scored (exit code 1 if any was bad).

    \b
    Examples:
      swingdial score --input posts.jsonl --output scored.jsonl
      swingdial score --input posts.jsonl --targets "Donald Trump,Kamala Harris,Elon Musk"
      echo '{"id": 1, "text": "What a great night"}' | swingdial score --input -
    """
    from models.scorer import load_scorer

    settings = get_settings()
    target_list = [t.strip() for t in targets.split(",") if t.strip()] if targets else None
    scorer = load_scorer(
        settings.scorer_config(), targets=target_list or settings.targets, precision=precision
    )
    bad = 0
    written = 0
    start = time.perf_counter()  # after the model loaded: the scoring rate
    source = sys.stdin if input_path == "-" else open(input_path, encoding="utf-8")  # noqa: SIM115
    sink = sys.stdout if output_path == "-" else open(output_path, "w", encoding="utf-8")  # noqa: SIM115
    try:
        batch: list[dict] = []

        def flush() -> None:
            nonlocal written
            outputs = scorer.score_texts([r["text"] for r in batch])
            for record, output in zip(batch, outputs, strict=True):
                line = {"id": record["id"], **output, "model_version": scorer.version}
                sink.write(json.dumps(line, ensure_ascii=False) + "\n")
            written += len(batch)
            batch.clear()

        for number, record, problem in _read_lines(source):
            if record is None:
                bad += 1
                click.echo(f"{input_path}:{number}: skipped: {problem}", err=True)
                continue
            batch.append(record)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    finally:
        if source is not sys.stdin:
            source.close()
        if sink is not sys.stdout:
            sink.close()
    elapsed = time.perf_counter() - start
    click.echo(
        f"scored {written} posts with {scorer.version} in {elapsed:.1f} s "
        f"({written / max(elapsed, 1e-9):.0f} posts/s); skipped {bad}",
        err=True,
    )
    if bad:
        raise SystemExit(1)


COMMANDS = [score_command]
