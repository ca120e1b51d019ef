"""`swingdial models ...`: train, evaluate and benchmark the scoring models."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from models.config import AVERAGE_HEADS, DELTA_FORMS, PRECISIONS, ScorerConfig
from models.data import SENTIMENT_HOLD_OUTS
from models.text import TEXT_FORM, TEXT_FORMS
from stream.config import get_settings

log = logging.getLogger(__name__)


@click.group("models")
def models_group() -> None:
    """Train, evaluate and benchmark the sentiment / stance / emotion models.

    \b
    Examples:
      swingdial models train                 # LoRA multi-task fine-tuning (~40 min, 2 CPUs)
      swingdial models train --method frozen # heads on the frozen encoder (~2 min)
      swingdial models eval                  # metrics -> <model>/metrics.json
      swingdial models bench --batch 64
      swingdial models export --validate     # ONNX fp32 + int8 encoders, int8 checked
      swingdial models promote /tmp/lora     # into the model directory

    Models you train or promote live in the model directory (SWINGDIAL_MODEL_DIR, default
    $SWINGDIAL_HOME/models); commands without --artifacts use the model there, or the
    read-only default shipped in the package when it holds none.
    """


def _data_root(data: Path | None) -> Path:
    return Path(data) if data else get_settings().shared_data


def _model(artifacts: Path | None) -> Path:
    """The model a command works on: --artifacts, else the active one (the model directory
    if it holds a model, else the packaged default)."""
    from models.artifact_store import resolve

    return resolve(artifacts, get_settings().model_path)


# What `models export --validate` compares with torch fp32 (the gate 'auto' reads).
VALIDATED = ("onnx-fp32", "onnx-int8", "openvino-int8", "openvino-bf16")


def data_option(command: Callable) -> Callable:
    return click.option(
        "--data", type=click.Path(path_type=Path), help="Labelled data (shared_data)."
    )(command)


def artifacts_option(what: str) -> Callable[[Callable], Callable]:
    """``--artifacts DIR``: the model a command works on (default: the active one)."""
    return click.option(
        "--artifacts",
        type=click.Path(path_type=Path, exists=True, file_okay=False),
        help=f"Artifacts folder{' ' + what if what else ''} (default: the active model).",
    )


def precision_option(help_text: str) -> Callable[[Callable], Callable]:
    """``--precision``: which runtime variant runs the encoder (default: the settings')."""
    return click.option(
        "--precision", type=click.Choice(list(PRECISIONS)), default=None, help=help_text
    )


def _runtime_config(precision: str | None, data: Path | None) -> ScorerConfig:
    """The scorer configuration the worker would use, with --precision / --data applied."""
    config = get_settings().scorer_config()
    if precision:
        config = replace(config, precision=precision)
    return replace(config, data_dir=_data_root(data))


def _cache_root() -> Path:
    """Where dev-set logits are cached (encode once, evaluate and calibrate many times)."""
    return get_settings().home / "cache" / "dev-logits"


def _share_option(flag: str, default: float, help_text: str) -> Any:
    """A `train` option giving a share (0..1) of the lora / full training data."""
    return click.option(
        flag, type=click.FloatRange(0, 1), default=default, show_default=True,
        help=f"lora / full: {help_text}",
    )  # fmt: skip


@models_group.command("train")
@click.option(
    "--method",
    type=click.Choice(["lora", "full", "frozen", "refit-stance", "refit-sentiment"]),
    default="lora",
    show_default=True,
    help="lora: adapters on MiniLM + heads, one multi-task pass; full: the same with every "
    "encoder weight trained (stored as its delta to the base); frozen: heads only; "
    "refit-stance / refit-sentiment: re-train that head of --base on its (LoRA) encoder.",
)
@click.option(
    "--base",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Artifacts to start from. refit-stance: the run whose stance head is re-fitted "
    "(default: the active model); lora / full: frozen heads or a run of that method to "
    "continue training "
    "(default: from scratch).",
)
@data_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Artifacts folder (default: the model directory, SWINGDIAL_MODEL_DIR).",
)
@click.option("--seed", default=13, show_default=True, help="Initial weights (and data).")
@click.option(
    "--data-seed",
    type=int,
    default=None,
    help="lora / full: order and sampling of the training data, when it should differ from "
    "--seed (two runs with one --seed start from the same heads, so their weights average).",
)
@click.option(
    "--average-tail",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="lora / full: average the weights over this last share of the schedule (~100 "
    "samples); the last step's model is kept in OUT/last-iterate.",
)
@click.option(
    "--text-form",
    type=click.Choice(TEXT_FORMS),
    default=TEXT_FORM,
    show_default=True,
    help="lora / full: the written form of a post trained on (models.text); raw "
    "reproduces the models trained before it.",
)
@_share_option(
    "--mask-mentions",
    0.0,
    "share of training posts whose @handles are spelt @user, as the TweetEval sets spell "
    "them (0: as written).",
)
@_share_option(
    "--none-pair-share",
    0.35,
    "share of the stance posts also trained as `none` towards a target they do not name "
    "(another data target or a distractor such as Taylor Swift).",
)
@click.option("--epochs", type=float, default=None, help="Passes over the training mix.")
@click.option("--rank", default=8, show_default=True, help="LoRA rank.")
@click.option("--lora-alpha", type=float, default=None, help="LoRA alpha (default 16).")
@click.option(
    "--lr",
    type=float,
    default=None,
    help="Learning rate of the adapters (lora, default 1e-3) or encoder weights (full, 5e-5).",
)
@click.option(
    "--layer-lr-decay",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="full: each encoder layer trains at this times the lr of the layer above "
    "(the top at --lr, the embeddings lowest); 1: one lr for every layer.",
)
@click.option("--batch-size", default=32, show_default=True)
@click.option(
    "--max-length", type=int, default=None, help="Tokens per post (default: LoRA 96, frozen 64)."
)
@click.option(
    "--mix",
    type=(float, float, float),
    default=None,
    help="LoRA: shares of sentiment, stance and emotion posts in each batch "
    "(default 0.30 0.60 0.10).",
)
@click.option(
    "--weak-limit",
    type=int,
    default=None,
    help="LoRA: weakly labelled SemEval Trump posts to mix in (default 3000); "
    "refit-stance: weak posts kept in the refit (default 0).",
)
@click.option(
    "--sentiment-limit",
    type=int,
    default=None,
    help="Use at most this many sentiment training posts (default per method).",
)
@click.option(
    "--time-budget-min",
    type=float,
    default=45.0,
    show_default=True,
    help="LoRA: stop training after this many minutes (the schedule is sized to fit).",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    help="Frozen: embedding cache (default: $SWINGDIAL_HOME/cache/embeddings).",
)
@click.option("--threads", type=int, default=None, help="torch threads (default: settings).")
@click.option(
    "--exclude-target",
    "exclude_targets",
    multiple=True,
    help="LoRA: leave this stance target out of training (leave-one-target-out evaluation).",
)
@click.option(
    "--neutral-weight",
    type=float,
    default=1.0,
    show_default=True,
    help="LoRA / refit-sentiment: multiply the neutral class weight of the sentiment loss "
    "(a later year is more neutral than the training pool).",
)
@click.option(
    "--train-dropout",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="lora / full: encoder dropout while training (default: the base's 0.1); 0 also "
    "runs attention eagerly, ~2x faster on CPU.",
)
@click.option(
    "--freeze-embeddings",
    is_flag=True,
    help="full: keep the word-embedding table at the base (the delta is then the layers "
    "only, ~10.7M weights instead of 22.7M).",
)
@click.option(
    "--sentiment-hold-out",
    type=click.Choice(list(SENTIMENT_HOLD_OUTS)),
    default="year",
    show_default=True,
    help="lora / full / refit-sentiment: what of the latest sentiment year "
    "(twitter-2016test) stays out of training. year: all of it, so the out-of-time dev "
    "figure is a later year (choose recipes so); dev-sample: only the 4,000 dev posts, so "
    "a chosen recipe also learns from the other 16,212 (its dev figure is then same-year).",
)
def train_command(
    method: str,
    base: Path | None,
    data: Path | None,
    out: Path | None,
    cache_dir: Path | None,
    threads: int | None,
    **options: Any,
) -> None:
    """Train the models on the labelled data and write the artifacts (then evaluate).

    The artifacts are small (adapters + heads + JSON); the labelled data stays in
    SWINGDIAL_SHARED_DATA and is never copied. Training is seeded and runs on CPU.

    \b
    Examples:
      swingdial models train
      swingdial models train --method frozen --out /tmp/heads
      nohup swingdial models train --out /tmp/lora > /tmp/train.log 2>&1 &
      swingdial models train --rank 16 --epochs 1.5 --time-budget-min 30
      swingdial models train --mix 0.42 0.48 0.10 --weak-limit 6000 --max-length 64
      swingdial models train --exclude-target "Joe Biden" --out /tmp/loto-biden
      swingdial models train --base /tmp/lora --time-budget-min 20 --out /tmp/lora-more
      swingdial models train --method full --lr 5e-5 --time-budget-min 10 --out /tmp/full
      swingdial models train --method full --freeze-embeddings --train-dropout 0 --out /tmp/f
      swingdial models train --method full --sentiment-hold-out dev-sample --out /tmp/f2
      swingdial models train --method full --average-tail 0.5 --data-seed 7 --out /tmp/f3
      swingdial models train --method full --text-form raw --out /tmp/f4   # as before session 8
      swingdial models train --method full --mask-mentions 0.5 --out /tmp/f5
      swingdial models train --method full --none-pair-share 0.15 --out /tmp/f6
      swingdial models train --method full --layer-lr-decay 0.8 --out /tmp/f7
      swingdial models train --method refit-stance --base /tmp/lora --out /tmp/lora-refit
      swingdial models train --method refit-sentiment --base /tmp/lora-refit --out /tmp/lora-s
    """
    from models.report import metrics_report
    from models.workflows import TrainRequest, set_threads, train_model

    settings = get_settings()
    set_threads(threads or settings.score.threads or 2)
    request = TrainRequest(  # every other option is a TrainRequest field of the same name
        method=method,
        base=_model(base) if method.startswith("refit-") else base,
        cache_dir=cache_dir or settings.home / "cache" / "embeddings",
        **options,
    )
    out = Path(out or settings.model_path)
    try:
        metrics = train_model(request, _data_root(data), out)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(metrics_report(metrics))
    click.echo(f"artifacts written to {out}")


@models_group.command("compress")
@click.argument("source", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--form", type=click.Choice(DELTA_FORMS), default="svd", show_default=True)
@click.option("--rank", default=32, show_default=True, help="svd: rank kept per weight matrix.")
def compress_command(source: Path, out: Path, form: str, rank: int) -> None:
    """Store a --method full run's encoder delta in a smaller form (then evaluate it).

    \b
    Examples:
      swingdial models compress /tmp/full --form svd --rank 32 --out /tmp/full-svd32
      swingdial models compress /tmp/full --form int4 --out /tmp/full-int4
      swingdial models eval --artifacts /tmp/full-svd32 --no-write
    """
    from models.workflows import compress_model

    try:
        result = compress_model(source, out, form, rank)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"encoder delta {result} written to {out}")


@models_group.command("average")
@click.argument("first", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("second", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option(
    "--weight", type=click.FloatRange(0, 1), default=0.5, show_default=True,
    help="Share of SECOND in the average.",
)  # fmt: skip
@click.option("--form", type=click.Choice(DELTA_FORMS), default="int4", show_default=True)
@click.option(
    "--heads", type=click.Choice(AVERAGE_HEADS), default="average",
    show_default=True,
    help="The heads: averaged (runs of the same seed only) or one run's.",
)  # fmt: skip
def average_command(
    first: Path, second: Path, out: Path, weight: float, form: str, heads: str
) -> None:
    """Average the weights of two --method full runs (then evaluate the average).

    \b
    Examples:
      swingdial models average /tmp/full-a /tmp/full-d --weight 0.3 --out /tmp/soup
      swingdial models average /tmp/full-seed13 /tmp/full-seed5 --heads first --out /tmp/s2
      swingdial models eval --artifacts /tmp/soup --no-write --precision torch-fp32
    """
    from models.workflows import average_models

    try:
        result = average_models(first, second, out, weight, form, heads)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"weights averaged ({weight:g} of {second}), encoder delta {result} in {out}")


@models_group.command("eval")
@data_option
@artifacts_option("to evaluate")
@click.option(
    "--write/--no-write",
    default=True,
    show_default=True,
    help="Write the metrics into <artifacts>/metrics.json (keeps training-only entries).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full metrics as JSON.")
@click.option(
    "--event",
    "event_id",
    default=None,
    help="Also score a simulated run of this event against the simulator's truth: "
    "sentiment, stance and topic on 1,000 posts, cohort calls on the whole run (minutes).",
)
@click.option(
    "--held-out",
    "held_out",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="A run trained with --exclude-target: record its score on the left-out target "
    "(leave-one-target-out) in these metrics. Repeatable.",
)
@precision_option(
    "Runtime the dev sets are encoded on (default: the settings' score precision, i.e. "
    "what the worker runs here; 'auto' picks the fastest the runtime gate allows)."
)
def eval_command(
    data: Path | None,
    artifacts: Path | None,
    write: bool,
    as_json: bool,
    event_id: str | None,
    held_out: tuple[Path, ...],
    precision: str | None,
) -> None:
    """Evaluate the trained models on the validation splits and print the field's metrics.

    Sentiment: macro-averaged recall; stance: F1avg (mean F1 of favor and against) per
    target and pooled; P-Stance: macro-F1 per target; emotion: macro-F1.

    \b
    Examples:
      swingdial models eval
      swingdial models eval --artifacts /tmp/lora --no-write
      SWINGDIAL_SHARED_DATA=/data/labelled swingdial models eval --json
      swingdial models eval --event trump-musk-2024
      swingdial models eval --held-out /tmp/loto-biden --held-out /tmp/loto-trump
      swingdial models eval --precision torch-fp32   # the training-time reference
    """
    from models.report import metrics_report
    from models.workflows import evaluate_model, save_metrics, set_threads

    settings = get_settings()
    set_threads(settings.score.threads or 2)
    directory = _model(artifacts)
    try:
        metrics, encoder, heads = evaluate_model(
            directory,
            _data_root(data),
            _cache_root(),
            held_out,
            config=_runtime_config(precision, data),
        )
    except (ValueError, FileNotFoundError) as exc:
        raise click.BadParameter(str(exc), param_hint="--held-out") from exc
    if event_id:  # the simulator lives in stream/: these checks are the stream side's
        from models.scorer import Scorer
        from stream.model_checks import simulated_cohort_check, simulated_event_check

        scorer = Scorer(encoder, heads, version=metrics["model_version"], targets=settings.targets)
        metrics["simulated_event"] = simulated_event_check(scorer, event_id)
        metrics["simulated_cohorts"] = simulated_cohort_check(
            scorer, event_id, min_posts=settings.worker.cohort_min_posts
        )
    click.echo(json.dumps(metrics, indent=2) if as_json else metrics_report(metrics))
    if write:
        click.echo(f"metrics written to {save_metrics(directory, metrics)}")


@models_group.command("calibrate")
@data_option
@artifacts_option("to calibrate")
@click.option(
    "--objective",
    type=click.Choice(["balanced", "nll"]),
    default="balanced",
    show_default=True,
    help="Sentiment bias: class-balanced NLL (aims at macro-recall) or plain NLL (the "
    "out-of-time class mix).",
)
@precision_option("Runtime whose dev-set logits are calibrated (default: the worker's).")
def calibrate_command(
    data: Path | None, artifacts: Path | None, objective: str, precision: str | None
) -> None:
    """Fit per-head temperature (+ sentiment class-prior bias) on the dev sets.

    Writes <artifacts>/calibration.json (read by the scorer), the before/after expected
    calibration error into metrics.json and a reliability plot <artifacts>/reliability.png.
    The "after" figures are cross-fitted (fit on one half of a dev set, scored on the
    other). Run `swingdial models eval` afterwards for every metric with calibration.

    \b
    Examples:
      swingdial models calibrate
      swingdial models calibrate --artifacts /tmp/lora --objective nll
    """
    from models.report import calibration_report
    from models.workflows import calibrate_model, set_threads

    set_threads(get_settings().score.threads or 2)
    params, report, written = calibrate_model(
        _model(artifacts),
        _data_root(data),
        _cache_root(),
        config=_runtime_config(precision, data),
        balanced=objective == "balanced",
    )
    click.echo(calibration_report(params, report))
    click.echo(f"calibration written to {written}")


@models_group.command("bench")
@click.option("--batch", default=64, show_default=True)
@click.option("--batches", default=10, show_default=True)
@artifacts_option("")
@precision_option("Runtime/precision (default: the settings' score precision).")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's).")
@click.option(
    "--compare",
    is_flag=True,
    help="Every runtime on real tweets (sentiment val): batch 64 and 256, sorted and "
    "unsorted, label agreement with torch fp32.",
)
@click.option("--posts", default=2000, show_default=True, help="--compare: tweets to score.")
@data_option
def bench_command(
    batch: int,
    batches: int,
    artifacts: Path | None,
    precision: str | None,
    threads: int | None,
    compare: bool,
    posts: int,
    data: Path | None,
) -> None:
    """Model-only throughput: posts/s, p50/p95 batch latency, peak RSS (cache disabled).

    \b
    Examples:
      swingdial models bench
      swingdial models bench --batch 64 --batches 20 --threads 2 --precision int8
      swingdial models bench --compare --threads 2
    """
    from models import bench

    settings = get_settings()
    config = settings.scorer_config()
    if threads:
        config = replace(config, threads=threads)
    if compare:
        from models.data import load_labelled

        texts, _ = load_labelled(_data_root(data), "sentiment", "val")
        bench.compare(texts[:posts], config=config, artifacts=artifacts, echo=click.echo)
        return
    result = bench.run_bench(
        batch=batch,
        batches=batches,
        artifacts=artifacts,
        precision=precision or config.precision,
        threads=threads,
        config=config,
    )
    click.echo(bench.format_result(result))


@models_group.command("export")
@artifacts_option("")
@click.option(
    "--validate",
    is_flag=True,
    help="Also compare the ONNX and OpenVINO int8 encoders with fp32 on the validation data "
    "and store the verdicts (<artifacts>/runtime.json) that let precision 'auto' use them on "
    "CPUs that round like this one (bf16 or not, VNNI / AMX int8 or not).",
)
@data_option
def export_command(artifacts: Path | None, validate: bool, data: Path | None) -> None:
    """Export the encoder (LoRA merged, pooling and normalisation inside) to ONNX fp32,
    ONNX dynamic int8 and OpenVINO static int8 (calibrated on training texts from --data),
    into the runtime cache (score_runtime_dir/<artifacts hash>/).

    The scorer also exports on first use; run this to pay that cost ahead of time.

    \b
    Examples:
      swingdial models export
      swingdial models export --validate
    """
    from models.scorer import export_runtime

    settings = get_settings()
    config = settings.scorer_config()
    directory = _model(artifacts)
    if data:
        config = replace(config, data_dir=Path(data))
    exported = export_runtime(config, directory)
    for variant, path in exported.items():
        size = sum(p.stat().st_size for p in (path, path.with_suffix(".bin")) if p.exists())
        click.echo(f"{variant}: {path} ({size / 1e6:.1f} MB)")
    if validate:
        from models.artifact_store import write_gate
        from models.runtime_check import validate as check

        variants = [v for v in VALIDATED if v in exported]
        result = check(variants, config, _data_root(data), directory)
        for variant, rows in result["variants"].items():
            for where, row in rows.items():
                verdict = "allowed" if row["ok"] else "not allowed"
                click.echo(
                    f"{variant} [{where}]: worst drop {row['worst_drop_points']:+.2f} points "
                    f"({verdict})"
                )
                for metric, drop in row["drops_points"].items():
                    click.echo(f"  {metric:<40} {row['metrics'][metric]:.4f}  drop {drop:+.2f}")
        click.echo(f"verdicts written to {write_gate(result, directory)}")


@models_group.command("promote")
@click.argument("source", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--to",
    "target",
    type=click.Path(path_type=Path, file_okay=False),
    help="Model directory to promote into (default: SWINGDIAL_MODEL_DIR, $SWINGDIAL_HOME/models).",
)
def promote_command(source: Path, target: Path | None) -> None:
    """Make a trained run the active model: copy it into the model directory.

    Use it after a background run wrote to /tmp and `models eval` looked good. The scorer
    loads the model directory whenever it holds a model (the read-only default shipped in
    the package is never changed). Weights are stored as float16 (half the size; runs
    written by `models train` already are); run `swingdial models eval` afterwards so the
    metrics come from the stored files.

    \b
    Example:
      swingdial models promote /tmp/lora
      swingdial models promote /tmp/lora --to /srv/swingdial/models
    """
    from models.artifact_store import copy_model

    target = Path(target or get_settings().model_path)
    try:
        copy_model(source, target)
    except (ValueError, FileNotFoundError) as exc:
        raise click.BadParameter(str(exc)) from exc
    click.echo(f"promoted {source} -> {target}")


COMMANDS = [models_group]
