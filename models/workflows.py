"""What the `swingdial models` commands do, as library calls (the CLI only parses options,
calls one of these and prints the result).

Each takes the labelled-data folder and artifacts folders as paths; nothing here reads
settings or the environment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models import artifact_store
from models.config import AVERAGE_HEADS, ScorerConfig
from models.cpu import measured_on
from models.data import SENTIMENT_HOLD_OUTS
from models.evaluate import (
    DEV_SETS_VERSION,
    DevSet,
    dev_logits,
    evaluate,
    excluded_targets,
    fit_calibration,
    held_out_metrics,
    load_dev_logits,
    oot_held_out,
    oot_later_year,
    save_dev_logits,
)
from models.scorer import load_on_runtime, model_version
from models.text import TEXT_FORM, model_text_form

METHODS = ("lora", "full", "frozen", "refit-stance", "refit-sentiment")
LOTO_FROZEN_TARGETS = ["Donald Trump", "Joe Biden", "Bernie Sanders", "Hillary Clinton"]


@dataclass
class TrainRequest:
    """A training run; ``None`` means the method's default."""

    method: str = "lora"
    base: Path | None = None  # refit-*: the run to refit; lora / full: a run to continue from
    seed: int = 13
    epochs: float | None = None
    rank: int = 8
    lora_alpha: float | None = None
    lr: float | None = None  # lora: adapters; full: the encoder weights
    batch_size: int = 32
    max_length: int | None = None
    mix: tuple[float, float, float] | None = None
    weak_limit: int | None = None
    sentiment_limit: int | None = None
    time_budget_min: float = 45.0
    cache_dir: Path | None = None  # frozen: embedding cache
    exclude_targets: tuple[str, ...] = field(default_factory=tuple)
    neutral_weight: float = 1.0
    train_dropout: float | None = None  # lora / full: encoder dropout while training
    freeze_embeddings: bool = False  # full: keep the word-embedding table at the base
    sentiment_hold_out: str = "year"  # lora / full / refit-sentiment: a SENTIMENT_HOLD_OUTS key
    data_seed: int | None = None  # lora / full: data order and sampling (None: seed)
    average_tail: float = 0.0  # lora / full: share of the schedule whose weights are averaged
    text_form: str = TEXT_FORM  # lora / full: the written form trained on (models.text)
    mask_mentions: float = 0.0  # lora / full: share of posts trained with @handles as @user
    none_pair_share: float = 0.35  # lora / full: stance posts re-used as none for another target
    layer_lr_decay: float = 1.0  # full: each encoder layer's lr relative to the one above

    def check(self) -> None:
        """Refuse what would give a wrong result, before minutes of training."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        if self.method.startswith("refit-") and self.base is None:
            raise ValueError(f"{self.method} needs the run to refit (base)")
        if self.exclude_targets and self.base is not None:
            # the base saw every target: a held-out score would leak
            raise ValueError("--exclude-target runs must start from scratch (no --base)")
        if self.sentiment_hold_out not in SENTIMENT_HOLD_OUTS:
            raise ValueError(f"sentiment hold-out must be one of {', '.join(SENTIMENT_HOLD_OUTS)}")
        if self.sentiment_hold_out != "year" and self.method not in (
            "lora",
            "full",
            "refit-sentiment",
        ):
            raise ValueError("--sentiment-hold-out applies to lora / full / refit-sentiment only")


def train_model(request: TrainRequest, root: Path, out: Path) -> dict[str, Any]:
    """Train ``request`` on the labelled data in ``root``, write the artifacts to ``out``
    and return their metrics."""
    request.check()
    if artifact_store.is_packaged(out):
        raise ValueError("the packaged default is read-only; write to the model directory")
    if request.method == "frozen":
        return _train_frozen(request, root, out)
    if request.method == "refit-stance":
        from models.lora import Refit, refit_stance_head

        assert request.base is not None
        return refit_stance_head(
            Refit(request.base, root, out, request.seed), weak_limit=request.weak_limit or 0
        )
    if request.method == "refit-sentiment":
        from models.lora import Refit, refit_sentiment_head

        assert request.base is not None
        return refit_sentiment_head(
            Refit(request.base, root, out, request.seed),
            epochs=int(request.epochs or 8),
            neutral_weight=request.neutral_weight,
            hold_out=SENTIMENT_HOLD_OUTS[request.sentiment_hold_out],
        )
    from models.lora import LoraConfig, train_lora

    cfg = LoraConfig(
        seed=request.seed,
        method=request.method,
        rank=request.rank,
        batch_size=request.batch_size,
        time_budget_min=request.time_budget_min,
        exclude_targets=tuple(request.exclude_targets),
        neutral_weight=request.neutral_weight,
        train_dropout=request.train_dropout,
        freeze_embeddings=request.freeze_embeddings,
        sentiment_hold_out=SENTIMENT_HOLD_OUTS[request.sentiment_hold_out],
        data_seed=request.data_seed,
        average_tail=request.average_tail,
        text_form=request.text_form,
        mask_mentions=request.mask_mentions,
        none_pair_share=request.none_pair_share,
        layer_lr_decay=request.layer_lr_decay,
    )
    given = {
        "warm_start": str(request.base) if request.base is not None else None,
        "epochs": request.epochs,
        "encoder_lr" if request.method == "full" else "lr": request.lr,
        "alpha": request.lora_alpha,
        "max_length": request.max_length,
        "mix": request.mix,
        "weak_limit": request.weak_limit,
        "sentiment_limit": request.sentiment_limit,
    }
    for name, value in given.items():
        if value is not None:
            setattr(cfg, name, value)
    cfg.check()
    train_lora(root, out, cfg)
    return artifact_store.read_metrics(out)


def _train_frozen(request: TrainRequest, root: Path, out: Path) -> dict[str, Any]:
    from models.train import loto_frozen, save_artifacts, train_frozen

    heads, embed, info = train_frozen(
        root,
        seed=request.seed,
        cache_dir=request.cache_dir,
        sentiment_limit=request.sentiment_limit or 16_000,
        epochs=int(request.epochs or 12),
    )
    metrics = evaluate(heads, embed, root)
    generic = info.pop("generic_texts")
    metrics["loto"] = loto_frozen(root, embed, LOTO_FROZEN_TARGETS, generic_texts=generic)
    metrics["loto_note"] = "leave-one-target-out with the frozen encoder"
    save_artifacts(out, heads, encoder=None, info=info, metrics=metrics, max_length=64)
    return metrics


def dev_sets(directory: Path, encoder: Any, heads: Any, root: Path, cache_root: Path) -> dict:
    """Dev-set logits of a run on its encoder's runtime variant, cached under
    ``cache_root`` by the weights (with the manifest, which names the text form), the
    variant, the dev sets' version and the data folder (encode once; evaluation and
    calibration share them)."""
    digest = hashlib.sha256(str(Path(root).resolve()).encode())
    digest.update(artifact_store.weights_hash(directory).encode())
    digest.update(encoder.runtime.variant.encode())
    digest.update(f"dev-sets-v{DEV_SETS_VERSION}".encode())
    cache = cache_root / digest.hexdigest()[:16]
    sets: dict[str, DevSet] | None = load_dev_logits(cache)
    if sets is None:
        sets = dev_logits(heads, encoder.encode, root)
        save_dev_logits(sets, cache)
    return sets


def check_held_out(runs: tuple[Path, ...]) -> None:
    """Fail before the minutes of evaluation if a --held-out run is not one."""
    for run in runs:
        excluded_targets(run)


def evaluate_model(
    directory: Path,
    root: Path,
    cache_root: Path,
    held_out: tuple[Path, ...] = (),
    *,
    config: ScorerConfig,
) -> tuple[dict[str, Any], Any, Any]:
    """Every dev-set metric of the model in ``directory`` (with its calibration) on the
    runtime ``config`` picks, plus the leave-one-target-out scores of ``held_out`` runs.
    Returns (metrics, encoder, heads) so a caller can run further checks on the same model."""
    check_held_out(held_out)
    encoder, heads, meta = load_on_runtime(directory, config)
    metrics = evaluate(
        heads,
        encoder.encode,
        root,
        calibration=artifact_store.read_calibration(directory),
        sets=dev_sets(directory, encoder, heads, root, cache_root),
    )
    metrics["model_version"] = model_version(directory, meta)
    metrics["runtime"] = encoder.runtime.variant
    metrics["measured_on"] = measured_on(encoder.runtime.variant)
    metrics["sentiment_oot"]["held_out_of_training"] = oot_held_out(meta)
    metrics["sentiment_oot"]["later_year"] = oot_later_year(meta)
    old = artifact_store.read_metrics(directory) if held_out else {}
    for run in held_out:
        key, method = loto_key(run)
        metrics.setdefault(key, dict(old.get(key, {}))).update(held_out_metrics(run, root))
        metrics[f"{key}_note"] = (
            f"leave-one-target-out: {method} runs trained without the target (--exclude-target)"
        )
    return metrics, encoder, heads


def loto_key(run: Path) -> tuple[str, str]:
    """Where a leave-one-target-out run's scores are kept in metrics.json, by its method."""
    if artifact_store.read_manifest(run).get("encoder_delta"):
        return "loto_full", "full fine-tuning"
    return "loto_lora", "LoRA"


def save_metrics(directory: Path, metrics: dict[str, Any]) -> Path:
    """Merge ``metrics`` into the model's metrics.json (training-only entries kept)."""
    return artifact_store.write_metrics(directory, artifact_store.read_metrics(directory) | metrics)


def calibrate_model(
    directory: Path, root: Path, cache_root: Path, *, config: ScorerConfig, balanced: bool = True
) -> tuple[dict, dict, Path]:
    """Fit per-head temperature (+ sentiment bias) on the dev-set logits of the runtime
    ``config`` picks, store it with the model, the before/after calibration error in
    metrics.json and a reliability plot. Returns (parameters, report, calibration.json)."""
    from models.calibration import reliability_png

    encoder, heads, _ = load_on_runtime(directory, config)
    sets = dev_sets(directory, encoder, heads, root, cache_root)
    params, report = fit_calibration(sets, balanced=balanced)
    written = artifact_store.write_calibration(directory, params)
    artifact_store.update_metrics(
        directory,
        {
            "calibration": report,
            "calibration_runtime": encoder.runtime.variant,
            "calibration_measured_on": measured_on(encoder.runtime.variant),
        },
    )
    reliability_png(
        {head: r["reliability"] for head, r in report.items()},
        artifact_store.reliability_path(directory),
    )
    return params, report, written


def compress_model(source: Path, out: Path, form: str, rank: int = 32) -> dict[str, Any]:
    """Re-store a fully fine-tuned model's encoder delta in ``form`` (one of
    ``models.config.DELTA_FORMS``) in ``out``: same heads and manifest, no metrics or
    calibration (the compressed encoder must be re-evaluated). Returns the form and the
    file's size."""
    from models.delta import decode_delta, encode_delta

    if artifact_store.is_packaged(out):
        raise ValueError("the packaged default is read-only; write to the model directory")
    stored = artifact_store.read_encoder_delta(source)
    if stored is None:
        raise ValueError(f"{source} holds no encoder delta (not a --method full run)")
    settings = {"form": form, **({"rank": rank} if form == "svd" else {})}
    packed = encode_delta(decode_delta(stored[1]), form, rank)
    manifest = artifact_store.read_manifest(source)
    manifest["training"] = manifest.get("training", {}) | {
        "encoder_delta_from": {"source": str(source), **stored[0]}
    }
    artifact_store.write_model(
        out,
        artifact_store.read_heads_state(source),
        manifest,
        encoder_delta=(settings, packed),
    )
    size = (Path(out) / artifact_store.ENCODER_DELTA).stat().st_size
    return settings | {"bytes": size}


def average_models(
    first: Path,
    second: Path,
    out: Path,
    weight: float = 0.5,
    form: str = "int4",
    heads: str = "average",
) -> dict[str, Any]:
    """Average two ``--method full`` runs' weights (a "model soup", ``weight`` on ``second``)
    into ``out``, the encoder delta stored in ``form``. The encoders share the base, so their
    deltas average whatever the seeds; heads average only when both runs started them from
    the same random weights (the same seed), else take one run's (``heads`` first / second).
    The manifest is ``second``'s and names both runs; no metrics or calibration (evaluate
    the average)."""
    from models.delta import decode_delta, encode_delta

    if artifact_store.is_packaged(out):
        raise ValueError("the packaged default is read-only; write to the model directory")
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    stored = [artifact_store.read_encoder_delta(run) for run in (first, second)]
    if any(s is None for s in stored):
        raise ValueError("both runs need an encoder delta (--method full)")
    if heads not in AVERAGE_HEADS:
        raise ValueError(f"heads must be one of {', '.join(AVERAGE_HEADS)}, not {heads!r}")
    deltas = [decode_delta(s[1]) for s in stored if s is not None]
    states = [artifact_store.read_heads_state(run) for run in (first, second)]
    pairs: list[tuple[str, list[dict[str, torch.Tensor]]]] = [
        ("encoder deltas", deltas),
        ("heads", states),
    ]
    for what, (a, b) in pairs:
        if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
            raise ValueError(f"the two runs' {what} differ in shape: not the same architecture")
    seeds = [
        artifact_store.training_setting(artifact_store.read_manifest(run), "seed")
        for run in (first, second)
    ]
    forms = [model_text_form(artifact_store.read_manifest(run)) for run in (first, second)]
    if forms[0] != forms[1]:
        raise ValueError(
            f"the runs were trained on different text forms ({forms[0]}, {forms[1]}): "
            "their encoders read different inputs"
        )
    if heads == "average" and seeds[0] != seeds[1]:
        raise ValueError(
            f"the runs' heads started from different random weights (seeds {seeds[0]}, "
            f"{seeds[1]}): averaging them mixes unrelated units; keep one run's heads"
        )

    def mix(a: dict, b: dict) -> dict[str, torch.Tensor]:
        return {k: (1 - weight) * a[k].float() + weight * b[k].float() for k in a}

    manifest = artifact_store.read_manifest(second)
    manifest["training"] = manifest.get("training", {}) | {
        "weight_average": {
            "runs": [str(first), str(second)],
            "weight_of_second": weight,
            "heads": heads,
        }
    }
    settings = {"form": form}
    head_state = {"average": mix(*states), "first": states[0], "second": states[1]}[heads]
    artifact_store.write_model(
        out,
        head_state,
        manifest,
        encoder_delta=(settings, encode_delta(mix(*deltas), form)),
    )
    return settings | {"bytes": (Path(out) / artifact_store.ENCODER_DELTA).stat().st_size}


def set_threads(threads: int) -> None:
    """torch intra-op threads for training and evaluation (0: leave the default)."""
    if threads > 0:
        torch.set_num_threads(threads)
