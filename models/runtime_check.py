"""Does a reduced precision cost accuracy? Validation metrics per runtime variant vs fp32.

The gate the scorer's 'auto' reads: a variant other than fp32 may be picked only if it
costs at most :data:`MAX_DROP_POINTS` on every metric below, computed with the scorer's own
length-sorted chunks on the validation data:

- sentiment macro-recall on TweetEval val and on the out-of-time rows of
  sentiment/train.jsonl (``origin`` twitter-2016test, the latest year);
- emotion macro-F1; P-Stance macro-F1 per target; TweetEval stance F1avg pooled.

Reduced precision rounds differently by CPU (bf16 or fp32 float ops, VNNI, AMX or
half-range int8), so a verdict holds for the numerics it was measured under
(:func:`models.cpu.numerics`) and 'auto' reads the one for its own CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import recall_score

from models.artifact_store import PACKAGED_DIR, artifacts_hash, read_manifest
from models.config import ScorerConfig
from models.cpu import model_name, numerics
from models.data import OUT_OF_TIME_ORIGIN, SENTIMENT_LABELS, data_dir, read_jsonl
from models.evaluate import _predict, evaluate
from models.export import EXPORT_FILES
from models.scorer import build_encoder, load_heads

MAX_DROP_POINTS = 0.5


def headline_metrics(metrics: dict, out_of_time: float) -> dict[str, float]:
    """The figures the gate compares, flat, from :func:`models.evaluate.evaluate`'s output."""
    flat = {
        "sentiment_val_macro_recall": metrics["sentiment"]["macro_recall"],
        "sentiment_out_of_time_macro_recall": out_of_time,
        "emotion_macro_f1": metrics["emotion"]["macro_f1"],
        "tweeteval_stance_f1avg_pooled": metrics["tweeteval_stance"]["pooled"]["f1avg"],
    }
    for target, row in metrics["pstance"].items():
        if target != "pooled":
            flat[f"pstance_macro_f1 {target}"] = row["macro_f1"]
    return flat


def variant_metrics(
    variant: str, config: ScorerConfig, root: Path, directory: Path = PACKAGED_DIR
) -> tuple[dict[str, float], np.ndarray]:
    """Headline metrics of one variant, and its out-of-time sentiment labels."""
    meta = read_manifest(directory)
    heads = load_heads(directory, meta)
    encoder = build_encoder(variant, config, directory, meta)
    metrics = evaluate(heads, encoder.encode, root, name_checks=False)
    rows = [
        r
        for r in read_jsonl(data_dir(root) / "sentiment" / "train.jsonl")
        if r.get("origin") == OUT_OF_TIME_ORIGIN
    ]
    pred = _predict(heads.sentiment, encoder.encode([r["text"] for r in rows])).argmax(1)
    recall = recall_score(
        [r["label"] for r in rows], [SENTIMENT_LABELS[i] for i in pred], average="macro"
    )
    return headline_metrics(metrics, round(float(recall), 4)), pred


def validate(
    variants: Sequence[str],
    config: ScorerConfig,
    root: Path,
    directory: Path = PACKAGED_DIR,
    reference: str = "torch-fp32",
) -> dict:
    """Metrics of ``reference`` and each variant, the drops in points, and the verdicts,
    each under the numerics of this CPU it holds for (``{variant: {numerics: row}}``)."""
    ref, ref_pred = variant_metrics(reference, config, root, directory)
    out: dict = {
        "artifacts_hash": artifacts_hash(directory),
        "reference": reference,
        "max_drop_points": MAX_DROP_POINTS,
        "reference_metrics": ref,
        "variants": {},
    }
    for variant in variants:
        got, pred = variant_metrics(variant, config, root, directory)
        drops = {k: round((ref[k] - got[k]) * 100, 2) for k in ref}
        worst = max(drops.values())
        out["variants"][variant] = {
            numerics(variant): {
                "ok": worst <= MAX_DROP_POINTS,
                "worst_drop_points": worst,
                "drops_points": drops,
                "metrics": got,
                "out_of_time_label_agreement": round(float(np.mean(pred == ref_pred)), 4),
                "cpu": model_name(),
                "file": EXPORT_FILES.get(variant),
            }
        }
    return out
