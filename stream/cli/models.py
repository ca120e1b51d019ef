"""`swingdial models ...`: train, evaluate and benchmark the scoring models."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import click

from models.config import PRECISIONS
from stream.config import get_settings

log = logging.getLogger(__name__)


@click.group("models")
def models_group() -> None:
    """Train, evaluate and benchmark the sentiment / stance / emotion models.

    \b
    Examples:
      swingdial models train                 # LoRA multi-task fine-tuning (~40 min, 2 CPUs)
      swingdial models train --method frozen # heads on the frozen encoder (~2 min)
      swingdial models eval                  # metrics -> models/artifacts/metrics.json
      swingdial models bench --batch 64
      swingdial models export --validate     # ONNX fp32 + int8 encoders, int8 checked
    """


def _data_root(data: Path | None) -> Path:
    return Path(data) if data else get_settings().shared_data


@models_group.command("train")
@click.option(
    "--method",
    type=click.Choice(["lora", "frozen", "refit-stance", "refit-sentiment"]),
    default="lora",
    show_default=True,
    help="lora: adapters on MiniLM + heads, one multi-task pass; frozen: heads only; "
    "refit-stance / refit-sentiment: re-train that head of --base on its (LoRA) encoder.",
)
@click.option(
    "--base",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Artifacts to start from. refit-stance: the run whose stance head is re-fitted "
    "(default: models/artifacts); lora: frozen heads or a LoRA run to continue training "
    "(default: from scratch).",
)
@click.option("--data", type=click.Path(path_type=Path), help="Labelled data (shared_data).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Artifacts folder (default: models/artifacts).",
)
@click.option("--seed", default=13, show_default=True)
@click.option("--epochs", type=float, default=None, help="Passes over the training mix.")
@click.option("--rank", default=8, show_default=True, help="LoRA rank.")
@click.option("--lr", type=float, default=None, help="Learning rate (default per method).")
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
def train_command(
    method: str,
    base: Path | None,
    data: Path | None,
    out: Path | None,
    seed: int,
    epochs: float | None,
    rank: int,
    lr: float | None,
    batch_size: int,
    max_length: int | None,
    mix: tuple[float, float, float] | None,
    weak_limit: int | None,
    sentiment_limit: int | None,
    time_budget_min: float,
    cache_dir: Path | None,
    threads: int | None,
    exclude_targets: tuple[str, ...],
    neutral_weight: float,
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
      swingdial models train --method refit-stance --base /tmp/lora --out /tmp/lora-refit
      swingdial models train --method refit-sentiment --base /tmp/lora-refit --out /tmp/lora-s
    """
    import torch

    from models.evaluate import evaluate
    from models.paths import ARTIFACTS_DIR
    from models.train import loto_frozen, save_artifacts, train_frozen

    settings = get_settings()
    torch.set_num_threads(threads or settings.torch_threads or 2)
    root = _data_root(data)
    out = Path(out or ARTIFACTS_DIR)
    if method == "frozen":
        cache = cache_dir or settings.home / "cache" / "embeddings"
        heads, embed, info = train_frozen(
            root,
            seed=seed,
            cache_dir=cache,
            sentiment_limit=sentiment_limit or 16_000,
            epochs=int(epochs or 12),
        )
        metrics = evaluate(heads, embed, root)
        generic = info.pop("generic_texts")
        metrics["loto"] = loto_frozen(
            root,
            embed,
            ["Donald Trump", "Joe Biden", "Bernie Sanders", "Hillary Clinton"],
            generic_texts=generic,
        )
        metrics["loto_note"] = "leave-one-target-out with the frozen encoder"
        save_artifacts(out, heads, encoder=None, info=info, metrics=metrics, max_length=64)
    elif method == "refit-stance":
        from models.lora import refit_stance_head

        metrics = refit_stance_head(
            Path(base or ARTIFACTS_DIR), root, out, seed=seed, weak_limit=weak_limit or 0
        )
    elif method == "refit-sentiment":
        from models.lora import refit_sentiment_head

        metrics = refit_sentiment_head(
            Path(base or ARTIFACTS_DIR),
            root,
            out,
            seed=seed,
            epochs=int(epochs or 8),
            neutral_weight=neutral_weight,
        )
    else:
        from models.lora import LoraConfig, train_lora

        cfg = LoraConfig(
            seed=seed,
            rank=rank,
            batch_size=batch_size,
            time_budget_min=time_budget_min,
            exclude_targets=tuple(exclude_targets),
            neutral_weight=neutral_weight,
        )
        if base is not None:
            if exclude_targets:  # the base saw every target: a held-out score would leak
                raise click.UsageError("--exclude-target runs must start from scratch (no --base)")
            cfg.warm_start = str(base)
        if epochs is not None:
            cfg.epochs = epochs
        if lr is not None:
            cfg.lr = lr
        if max_length is not None:
            cfg.max_length = max_length
        if mix is not None:
            cfg.mix = mix
            try:
                cfg.check()
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--mix") from exc
        if weak_limit is not None:
            cfg.weak_limit = weak_limit
        if sentiment_limit is not None:
            cfg.sentiment_limit = sentiment_limit
        train_lora(root, out, cfg)
        metrics = json.loads((out / "metrics.json").read_text())
    _print_metrics(metrics)
    click.echo(f"artifacts written to {out}")


@models_group.command("eval")
@click.option("--data", type=click.Path(path_type=Path), help="Labelled data (shared_data).")
@click.option(
    "--artifacts",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Artifacts folder to evaluate (default: models/artifacts).",
)
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
def eval_command(
    data: Path | None,
    artifacts: Path | None,
    write: bool,
    as_json: bool,
    event_id: str | None,
    held_out: tuple[Path, ...],
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
    """
    import torch

    from models.calibration import read_calibration
    from models.evaluate import evaluate, excluded_targets, oot_held_out
    from models.paths import ARTIFACTS_DIR
    from models.scorer import load_model, model_version

    settings = get_settings()
    torch.set_num_threads(settings.torch_threads or 2)
    directory = Path(artifacts or ARTIFACTS_DIR)
    for run in held_out:  # fail before the minutes of evaluation, not after
        try:
            excluded_targets(run)
        except (ValueError, FileNotFoundError) as exc:
            raise click.BadParameter(str(exc), param_hint="--held-out") from exc
    encoder, heads, meta = load_model(directory)
    sets = _dev_sets(directory, encoder, heads, _data_root(data))
    metrics = evaluate(
        heads,
        encoder.encode,
        _data_root(data),
        calibration=read_calibration(directory),
        sets=sets,
    )
    metrics["model_version"] = model_version(directory, meta)
    metrics["sentiment_oot"]["held_out_of_training"] = oot_held_out(meta)
    if event_id:
        from models.scorer import Scorer
        from stream.model_checks import simulated_cohort_check, simulated_event_check

        scorer = Scorer(encoder, heads, version=metrics["model_version"], targets=settings.targets)
        metrics["simulated_event"] = simulated_event_check(scorer, event_id)
        metrics["simulated_cohorts"] = simulated_cohort_check(
            scorer, event_id, min_posts=settings.cohort_min_posts
        )
    path = directory / "metrics.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    if held_out:
        from models.evaluate import held_out_metrics

        metrics["loto_lora"] = dict(old.get("loto_lora", {}))
        for run in held_out:
            metrics["loto_lora"].update(held_out_metrics(run, _data_root(data)))
        metrics["loto_lora_note"] = (
            "leave-one-target-out: LoRA runs trained without the target (--exclude-target)"
        )
    if write:
        path.write_text(json.dumps(old | metrics, indent=2) + "\n")
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
    else:
        _print_metrics(metrics)
    if write:
        click.echo(f"metrics written to {path}")


def _dev_sets(directory: Path, encoder, heads, root: Path) -> dict:
    """Dev-set logits of a run, cached by its weights and the data folder (encode once)."""
    import hashlib

    from models.evaluate import dev_logits, load_dev_logits, save_dev_logits

    digest = hashlib.sha256(str(Path(root).resolve()).encode())
    for name in ("heads.safetensors", "lora.safetensors", "model.json"):
        if (directory / name).exists():
            digest.update((directory / name).read_bytes())
    cache = get_settings().home / "cache" / "dev-logits" / digest.hexdigest()[:16]
    sets = load_dev_logits(cache)
    if sets is None:
        sets = dev_logits(heads, encoder.encode, root)
        save_dev_logits(sets, cache)
    return sets


@models_group.command("calibrate")
@click.option("--data", type=click.Path(path_type=Path), help="Labelled data (shared_data).")
@click.option(
    "--artifacts",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Artifacts folder to calibrate (default: models/artifacts).",
)
@click.option(
    "--objective",
    type=click.Choice(["balanced", "nll"]),
    default="balanced",
    show_default=True,
    help="Sentiment bias: class-balanced NLL (aims at macro-recall) or plain NLL (the "
    "out-of-time class mix).",
)
def calibrate_command(data: Path | None, artifacts: Path | None, objective: str) -> None:
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
    import torch

    from models.calibration import CALIBRATION_FILE, reliability_png
    from models.evaluate import fit_calibration
    from models.paths import ARTIFACTS_DIR
    from models.scorer import load_model

    torch.set_num_threads(get_settings().torch_threads or 2)
    directory = Path(artifacts or ARTIFACTS_DIR)
    encoder, heads, _ = load_model(directory)
    sets = _dev_sets(directory, encoder, heads, _data_root(data))
    params, report = fit_calibration(sets, balanced=objective == "balanced")
    (directory / CALIBRATION_FILE).write_text(json.dumps(params, indent=2) + "\n")
    path = directory / "metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {}
    metrics["calibration"] = report
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    reliability_png(
        {head: r["reliability"] for head, r in report.items()}, directory / "reliability.png"
    )
    for head, r in report.items():
        p = params[head]
        bias = f", bias {p['bias']}" if "bias" in p else ""
        click.echo(
            f"{head:<10} T {p['temperature']:.3f}{bias}  ECE {r['ece_before']:.3f} -> "
            f"{r['ece_after']:.3f} (cross-fitted on {r['dev']}, n={r['n']})"
        )
    s = report["sentiment"]["cross_fitted"]
    recall = ", ".join(f"{k} {v:.3f}" for k, v in s["recall"].items())
    click.echo(
        f"sentiment out-of-time, cross-fitted: macro-recall {s['macro_recall']:.3f} ({recall})"
    )
    click.echo(f"calibration written to {directory / CALIBRATION_FILE}")


@models_group.command("bench")
@click.option("--batch", default=64, show_default=True)
@click.option("--batches", default=10, show_default=True)
@click.option(
    "--artifacts",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Artifacts folder (default: models/artifacts).",
)
@click.option(
    "--precision",
    type=click.Choice(list(PRECISIONS)),
    default=None,
    help="Runtime/precision (default: settings' score_precision).",
)
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's).")
@click.option(
    "--compare",
    is_flag=True,
    help="Every runtime on real tweets (sentiment val): batch 64 and 256, sorted and "
    "unsorted, label agreement with torch fp32.",
)
@click.option("--posts", default=2000, show_default=True, help="--compare: tweets to score.")
@click.option("--data", type=click.Path(path_type=Path), help="Labelled data (shared_data).")
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
@click.option(
    "--artifacts",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Artifacts folder (default: models/artifacts).",
)
@click.option(
    "--validate",
    is_flag=True,
    help="Also compare the ONNX and OpenVINO int8 encoders with fp32 on the validation data "
    "and store the verdicts (<artifacts>/runtime.json) that let precision 'auto' use them.",
)
@click.option("--data", type=click.Path(path_type=Path), help="Labelled data (shared_data).")
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
    from models.paths import ARTIFACTS_DIR
    from models.scorer import export_runtime

    settings = get_settings()
    config = settings.scorer_config()
    directory = Path(artifacts or ARTIFACTS_DIR)
    if data:
        config = replace(config, data_dir=Path(data))
    exported = export_runtime(config, directory)
    for variant, path in exported.items():
        size = sum(p.stat().st_size for p in (path, path.with_suffix(".bin")) if p.exists())
        click.echo(f"{variant}: {path} ({size / 1e6:.1f} MB)")
    if validate:
        from models.runtime_check import validate as check
        from models.runtime_check import write_gate

        variants = [v for v in ("onnx-fp32", "onnx-int8", "openvino-int8") if v in exported]
        result = check(variants, config, _data_root(data), directory)
        for variant, row in result["variants"].items():
            verdict = "allowed" if row["ok"] else "not allowed"
            click.echo(f"{variant}: worst drop {row['worst_drop_points']:+.2f} points ({verdict})")
            for metric, drop in row["drops_points"].items():
                click.echo(f"  {metric:<40} {row['metrics'][metric]:.4f}  drop {drop:+.2f}")
        click.echo(f"verdicts written to {write_gate(result, directory)}")


@models_group.command("promote")
@click.argument("source", type=click.Path(path_type=Path, exists=True, file_okay=False))
def promote_command(source: Path) -> None:
    """Copy trained artifacts from another folder into models/artifacts.

    Use it after a background run wrote to /tmp and `models eval` looked good. Weights are
    stored as float16 (half the size; runs written by `models train` already are); run
    `swingdial models eval` afterwards so the metrics come from the stored files.

    \b
    Example:
      swingdial models promote /tmp/lora
    """
    from safetensors.torch import load_file, save_file

    from models.paths import ARTIFACTS_DIR
    from models.scorer import ARTIFACT_FILES
    from models.train import half_precision

    for name in (*ARTIFACT_FILES, "metrics.json"):
        target = ARTIFACTS_DIR / name
        if (source / name).exists() and name.endswith(".safetensors"):
            save_file(half_precision(load_file(str(source / name))), str(target))
        elif (source / name).exists():
            shutil.copy2(source / name, target)
        elif target.exists():
            target.unlink()
    click.echo(f"promoted {source} -> {ARTIFACTS_DIR}")


def _print_metrics(m: dict) -> None:
    for key, name in (
        ("sentiment", "TweetEval val (same pool as training)"),
        ("sentiment_oot", "out-of-time dev"),
    ):
        if key not in m:
            continue
        s = m[key]
        if s.get("held_out_of_training") is False:
            name += " (NOT held out: this run trained on it)"
        recall = ", ".join(f"{k} {v:.3f}" for k, v in s.get("recall", {}).items())
        click.echo(
            f"sentiment  {name}: macro-recall {s['macro_recall']:.3f}  macro-F1 "
            f"{s['macro_f1']:.3f}  (recall {recall})"
        )
    click.echo(f"emotion    macro-F1 {m['emotion']['macro_f1']:.3f}")
    click.echo("P-Stance   (favor/against)   macro-F1   F1avg(3-way)  none-rate")
    for target, row in m["pstance"].items():
        click.echo(
            f"  {target:<28}{row['macro_f1']:>8.3f}{row['f1avg']:>12.3f}{row['none_rate']:>11.3f}"
        )
    click.echo("TweetEval stance  F1avg (favor/against, 3-way prediction)")
    for target, row in m["tweeteval_stance"].items():
        click.echo(f"  {target:<34}{row['f1avg']:>8.3f}  (n={row['n']})")
    if "weak_trump_3way" in m:
        w = m["weak_trump_3way"]
        click.echo(
            f"weak Trump dev, 3-way (hashtag labels, noisy; n={w['n']}): F1avg {w['f1avg']:.3f}, "
            f"none predicted {w['none_share_pred']:.0%} vs {w['none_share_gold']:.0%} gold"
        )
    if "unrelated_target_none_rate" in m:
        rates = ", ".join(f"{k} {v:.2f}" for k, v in m["unrelated_target_none_rate"].items())
        click.echo(f"unrelated target -> none rate: {rates}")
    if "handwritten_unseen" in m:
        h = m["handwritten_unseen"]
        click.echo("unseen targets, 30 handwritten posts (sanity check, not a benchmark)")
        for target, row in h.items():
            if isinstance(row, dict):
                click.echo(f"  {target:<28} acc {row['accuracy']:.3f}  F1avg {row['f1avg']:.3f}")
    if "simulated_event" in m:
        sim = m["simulated_event"]
        stance = ", ".join(f"{t} {r['f1avg']:.3f}" for t, r in sim["stance"].items())
        click.echo(
            f"simulated {sim['event']} (n={sim['n']}, simulator truth): sentiment macro-recall "
            f"{sim['sentiment_macro_recall']:.3f}, topic acc {sim['topic_accuracy']:.3f}, "
            f"stance F1avg {stance}"
        )
    if "simulated_cohorts" in m:
        c = m["simulated_cohorts"]
        for name in ("with_history", "bio_only"):
            row = c[name]
            recall = ", ".join(f"{k} {v:.2f}" for k, v in row["recall"].items())
            click.echo(
                f"cohort calls, {name.replace('_', ' ')} ({c['posts']} posts, {c['authors']} "
                f"authors): accuracy {row['accuracy']:.3f}, macro-recall "
                f"{row['macro_recall']:.3f} (recall {recall})"
            )
    for key in ("loto", "loto_lora"):
        if key not in m:
            continue
        click.echo(f"{m.get(key + '_note', 'leave-one-target-out')}")
        for target, row in m[key].items():
            extra = f"  macro-F1 {row['macro_f1']:.3f}" if "macro_f1" in row else ""
            click.echo(f"  {target:<28} F1avg {row['f1avg']:.3f}{extra}")


COMMANDS = [models_group]
