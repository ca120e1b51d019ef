"""Metrics the field reports, computed on the validation splits in ``shared_data``.

- sentiment: macro-averaged recall over negative/neutral/positive (TweetEval);
- stance: F1avg = mean F1 of favor and against (SemEval-2016 / TweetEval), per target
  and pooled, with the 3-way prediction (favor/against/none);
- P-Stance: macro-F1 of favor/against per target; the data has no "none", so the
  prediction is the larger of favor/against (as in the P-Stance paper);
- emotion: macro-F1 over anger/joy/optimism/sadness.

Dev sets: sentiment has two, TweetEval val (same 2013-16 pool as training) and the
out-of-time dev set (``OUT_OF_TIME_ORIGIN``, held out of training; choose models on it);
stance has P-Stance val (2-way), TweetEval stance val and the weak Trump dev set (3-way,
"none" about half of it), plus leave-one-target-out runs (:func:`held_out_metrics`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score, recall_score

from models.artifact_store import training_setting
from models.calibration import calibrate
from models.data import (
    EMOTION_LABELS,
    OUT_OF_TIME_ORIGIN,
    PSTANCE_TARGETS,
    SENTIMENT_HOLD_OUTS,
    SENTIMENT_LABELS,
    STANCE_LABELS,
    StanceExample,
    load_labelled,
    load_sentiment_oot,
    load_stance,
    names_person,
    rename_person,
    weak_split,
)
from models.heads import Heads
from models.report import OOT_TWEETEVAL_SPELLING, SENTIMENT_DEV_SETS
from models.text import tweeteval_spelling

EmbedFn = Callable[[Sequence[str]], np.ndarray]
# 30 posts about Kamala Harris / Elon Musk written by the model author (no labelled data
# exists for them): a sanity check of unseen-target stance, not a benchmark.
HANDWRITTEN = Path(__file__).resolve().parent / "eval" / "unseen_targets.jsonl"
# The event targets without labelled data; the renamed-target check asks whether the model
# calls stance towards their names at all (model card, "Session 19").
UNLABELLED_TARGETS = ("Elon Musk", "Kamala Harris")
RENAMED_PER_TARGET = 200  # P-Stance val posts per labelled target that name the person
# Bumped when dev_logits gains or changes a set, so cached logits from before are not reused.
DEV_SETS_VERSION = 2  # 2: the out-of-time posts in the later-year test's spelling


def f1avg(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Mean F1 of favor and against (none counts only through errors)."""
    return float(
        f1_score(gold, pred, labels=["favor", "against"], average="macro", zero_division=0)
    )


@torch.inference_mode()
def _predict(head: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    return torch.softmax(head(torch.from_numpy(np.asarray(x, dtype=np.float32))), -1).numpy()


@torch.inference_mode()
def stance_probs(
    heads: Heads, text_emb: np.ndarray, targets: Sequence[str], target_emb: dict[str, np.ndarray]
) -> np.ndarray:
    t = torch.from_numpy(np.asarray(text_emb, dtype=np.float32))
    g = torch.from_numpy(np.stack([target_emb[x] for x in targets]).astype(np.float32))
    return torch.softmax(heads.stance_logits(t, g), -1).numpy()


def stance_metrics(
    examples: Sequence[StanceExample], probs: np.ndarray, *, binary: bool
) -> dict[str, dict[str, float]]:
    """Per-target (and pooled) metrics; ``binary`` = P-Stance style favor-vs-against."""
    gold = [ex.label for ex in examples]
    if binary:
        pred = ["favor" if p[0] >= p[1] else "against" for p in probs]
    else:
        pred = [STANCE_LABELS[int(i)] for i in probs.argmax(1)]
    pred3 = [STANCE_LABELS[int(i)] for i in probs.argmax(1)]
    out: dict[str, dict[str, float]] = {}
    groups = {t: [i for i, ex in enumerate(examples) if ex.target == t] for t in _targets(examples)}
    groups["pooled"] = list(range(len(examples)))
    for target, idx in groups.items():
        g = [gold[i] for i in idx]
        p = [pred[i] for i in idx]
        row = {"n": len(idx), "f1avg": round(f1avg(g, [pred3[i] for i in idx]), 4)}
        if binary:
            row["macro_f1"] = round(
                float(f1_score(g, p, labels=["favor", "against"], average="macro")), 4
            )
            row["none_rate"] = round(float(np.mean([pred3[i] == "none" for i in idx])), 4)
        out[target] = row
    return out


def _targets(examples: Sequence[StanceExample]) -> list[str]:
    return sorted({ex.target for ex in examples})


@dataclass
class DevSet:
    """Raw logits of one head on one dev set (computed once, then calibrated and scored)."""

    head: str  # sentiment | emotion | stance
    logits: np.ndarray
    gold: list[str]
    targets: list[str] | None = None  # stance only

    def examples(self) -> list[StanceExample]:
        return [
            StanceExample("", t, g, "dev")
            for t, g in zip(self.targets or [], self.gold, strict=True)
        ]


@torch.inference_mode()
def dev_logits(heads: Heads, embed: EmbedFn, root: Path | str) -> dict[str, DevSet]:
    """Every dev set's logits: TweetEval val and the out-of-time dev set, as written and
    in the TweetEval spelling (sentiment),
    emotion val, P-Stance val, TweetEval stance val and the weak Trump dev set (stance)."""
    heads.eval()

    def simple(head: torch.nn.Module, texts: Sequence[str]) -> np.ndarray:
        return head(torch.from_numpy(np.asarray(embed(texts), dtype=np.float32))).numpy()

    sets: dict[str, DevSet] = {}
    texts, gold = load_labelled(root, "sentiment", "val")
    sets["sentiment_val"] = DevSet("sentiment", simple(heads.sentiment, texts), gold)
    texts, gold = load_sentiment_oot(root)
    sets["sentiment_oot"] = DevSet("sentiment", simple(heads.sentiment, texts), gold)
    spelt = [tweeteval_spelling(t) for t in texts]
    sets[OOT_TWEETEVAL_SPELLING] = DevSet("sentiment", simple(heads.sentiment, spelt), gold)
    texts, gold = load_labelled(root, "emotion", "val")
    sets["emotion_val"] = DevSet("emotion", simple(heads.emotion, texts), gold)
    stance = {
        "pstance_val": load_stance(root, "pstance_val"),
        "tweeteval_stance_val": load_stance(root, "tweeteval_val"),
        "weak_trump_dev": weak_split(root, 13)[1],
    }
    targets = sorted({ex.target for exs in stance.values() for ex in exs})
    target_emb = dict(zip(targets, embed(targets), strict=True))
    for name, exs in stance.items():
        t = torch.from_numpy(np.asarray(embed([ex.text for ex in exs]), dtype=np.float32))
        g = torch.from_numpy(np.stack([target_emb[ex.target] for ex in exs]).astype(np.float32))
        sets[name] = DevSet(
            "stance",
            heads.stance_logits(t, g).numpy(),
            [ex.label for ex in exs],
            [ex.target for ex in exs],
        )
    return sets


def save_dev_logits(sets: dict[str, DevSet], path: Path) -> None:
    """Cache the dev logits (``.npz`` + ``.json``) so calibration never re-encodes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {k: v.logits for k, v in sets.items()}
    np.savez_compressed(path.with_suffix(".npz"), **arrays)
    meta = {k: {"head": v.head, "gold": v.gold, "targets": v.targets} for k, v in sets.items()}
    path.with_suffix(".json").write_text(json.dumps(meta))


def load_dev_logits(path: Path) -> dict[str, DevSet] | None:
    if not path.with_suffix(".npz").exists() or not path.with_suffix(".json").exists():
        return None
    arrays = np.load(path.with_suffix(".npz"))
    meta = json.loads(path.with_suffix(".json").read_text())
    return {k: DevSet(m["head"], arrays[k], m["gold"], m["targets"]) for k, m in meta.items()}


def classification_metrics(gold: Sequence[str], probs: np.ndarray, labels: Sequence[str]) -> dict:
    """Macro-recall, per-class recall, macro-F1 and accuracy of the argmax labels."""
    pred = [labels[int(i)] for i in probs.argmax(1)]
    recall = recall_score(gold, pred, labels=list(labels), average=None, zero_division=0)
    return {
        "macro_recall": round(float(np.mean(recall)), 4),
        "recall": {lab: round(float(r), 4) for lab, r in zip(labels, recall, strict=True)},
        "macro_f1": round(float(f1_score(gold, pred, labels=list(labels), average="macro")), 4),
        "accuracy": round(float(np.mean(np.array(gold) == np.array(pred))), 4),
        "n": len(gold),
    }


def metrics_from_logits(sets: dict[str, DevSet], calibration: dict | None = None) -> dict:
    """The validation metrics from dev logits, with ``calibration`` applied (None: softmax)."""

    def probs(name: str) -> np.ndarray:
        return calibrate(sets[name].head, sets[name].logits, calibration)

    m: dict = {
        "sentiment": classification_metrics(
            sets["sentiment_val"].gold, probs("sentiment_val"), SENTIMENT_LABELS
        ),
        "sentiment_oot": classification_metrics(
            sets["sentiment_oot"].gold, probs("sentiment_oot"), SENTIMENT_LABELS
        )
        | {"origin": OUT_OF_TIME_ORIGIN},
        "emotion": classification_metrics(
            sets["emotion_val"].gold, probs("emotion_val"), EMOTION_LABELS
        ),
        "pstance": stance_metrics(
            sets["pstance_val"].examples(), probs("pstance_val"), binary=True
        ),
        "tweeteval_stance": stance_metrics(
            sets["tweeteval_stance_val"].examples(), probs("tweeteval_stance_val"), binary=False
        ),
    }
    if OOT_TWEETEVAL_SPELLING in sets:
        m[OOT_TWEETEVAL_SPELLING] = classification_metrics(
            sets[OOT_TWEETEVAL_SPELLING].gold, probs(OOT_TWEETEVAL_SPELLING), SENTIMENT_LABELS
        ) | {"origin": OUT_OF_TIME_ORIGIN, "spelling": "links removed, mentions @user"}
    if "weak_trump_dev" in sets:
        weak = sets["weak_trump_dev"]
        pred = [STANCE_LABELS[int(i)] for i in probs("weak_trump_dev").argmax(1)]
        m["weak_trump_3way"] = {
            "n": len(weak.gold),
            "f1avg": round(f1avg(weak.gold, pred), 4),
            "accuracy": round(float(np.mean(np.array(weak.gold) == np.array(pred))), 4),
            "none_share_gold": round(float(np.mean(np.array(weak.gold) == "none")), 4),
            "none_share_pred": round(float(np.mean(np.array(pred) == "none")), 4),
            "note": "hashtag labels (SemEval-2016 6B weak set), noisy: a 3-way sanity check",
        }
    return m


def evaluate(
    heads: Heads,
    embed: EmbedFn,
    root: Path | str,
    *,
    name_checks: bool = True,
    calibration: dict | None = None,
    sets: dict[str, DevSet] | None = None,
) -> dict:
    """Every validation metric for heads on top of ``embed`` (frozen cache or LoRA encoder).

    Labels and figures use the calibrated probabilities when ``calibration`` is given
    (as the scorer does); ``<sentiment dev set>_raw`` keep the plain argmax.
    ``name_checks``: also the stance-towards-names checks (unrelated targets, renamed
    targets; ~2,000 more encodes, which the precision gate does not compare).
    """
    heads.eval()
    sets = sets if sets is not None else dev_logits(heads, embed, root)
    metrics = metrics_from_logits(sets, calibration)
    if calibration:
        raw = metrics_from_logits(sets, None)
        for key, _ in SENTIMENT_DEV_SETS:
            if key in raw:
                metrics[f"{key}_raw"] = raw[key]
    pst = load_stance(root, "pstance_val")
    if name_checks:
        # P-Stance posts about Trump/Biden/Sanders scored towards targets they never mention:
        # the share predicted "none" (higher is better; no human labels, a sanity check).
        rates = {}
        sample = [ex for ex in pst if "harris" not in ex.text.lower()][:400]
        sample_emb = embed([ex.text for ex in sample])
        for other in ("Elon Musk", "Taylor Swift", "Kamala Harris"):
            emb = {other: embed([other])[0]}
            probs = stance_probs(heads, sample_emb, [other] * len(sample), emb)
            rates[other] = round(float(np.mean(probs.argmax(1) == 2)), 4)
        metrics["unrelated_target_none_rate"] = rates
        metrics["renamed_targets"] = renamed_targets(heads, embed, pst)
    if HANDWRITTEN.exists():
        metrics["handwritten_unseen"] = handwritten_unseen(heads, embed)
    metrics["summary"] = {
        "sentiment_macro_recall": metrics["sentiment"]["macro_recall"],
        "sentiment_oot_macro_recall": metrics["sentiment_oot"]["macro_recall"],
        f"{OOT_TWEETEVAL_SPELLING}_macro_recall": metrics.get(OOT_TWEETEVAL_SPELLING, {}).get(
            "macro_recall"
        ),
        "emotion_macro_f1": metrics["emotion"]["macro_f1"],
        "pstance_macro_f1": {
            t: metrics["pstance"][t]["macro_f1"] for t in PSTANCE_TARGETS if t in metrics["pstance"]
        },
        "stance_f1avg_pooled_tweeteval": metrics["tweeteval_stance"]["pooled"]["f1avg"],
        "weak_trump_3way_f1avg": metrics.get("weak_trump_3way", {}).get("f1avg"),
    }
    return metrics


def handwritten_unseen(heads: Heads, embed: EmbedFn) -> dict:
    """Stance on the handwritten Harris/Musk posts: accuracy (3-way) and F1avg per target."""
    from models.data import read_jsonl

    rows = [StanceExample(r["text"], r["target"], r["label"], "handwritten")
            for r in read_jsonl(HANDWRITTEN)]  # fmt: skip
    targets = sorted({ex.target for ex in rows})
    probs = stance_probs(
        heads,
        embed([ex.text for ex in rows]),
        [ex.target for ex in rows],
        dict(zip(targets, embed(targets), strict=True)),
    )
    pred = [STANCE_LABELS[int(i)] for i in probs.argmax(1)]
    out: dict = {"note": "30 author-written posts; sanity check, not a benchmark"}
    for target in [*targets, "pooled"]:
        idx = [i for i, ex in enumerate(rows) if target in (ex.target, "pooled")]
        gold = [rows[i].label for i in idx]
        got = [pred[i] for i in idx]
        out[target] = {
            "n": len(idx),
            "accuracy": round(float(np.mean(np.array(gold) == np.array(got))), 4),
            "f1avg": round(f1avg(gold, got), 4),
        }
    return out


def renamed_targets(
    heads: Heads,
    embed: EmbedFn,
    pstance_val: Sequence[StanceExample],
    names: Sequence[str] = UNLABELLED_TARGETS,
    per_target: int = RENAMED_PER_TARGET,
) -> dict:
    """Stance towards a name the model has no labels for, on posts whose stance is known:
    P-Stance val posts that name their person, with the person renamed to each of ``names``
    and scored towards that name (favor/against macro-F1 and the share called ``none``,
    which should be near 0: every post takes a side). The first row scores the same posts
    as written towards their own target. A name the model learnt to call ``none`` (say, one
    near an "unrelated" distractor) shows up here as a high none rate."""
    posts = [
        ex
        for target in PSTANCE_TARGETS
        for ex in [
            ex for ex in pstance_val if ex.target == target and names_person(ex.text, target)
        ][:per_target]
    ]
    out: dict = {"note": f"{len(posts)} P-Stance val posts that name their person"}
    out["as written (own target)"] = _pooled_binary(heads, embed, posts)
    for name in names:
        first, last = name.rsplit(" ", 1)
        renamed = [
            StanceExample(rename_person(ex.text, ex.target, first, last), name, ex.label, "renamed")
            for ex in posts
        ]
        out[name] = _pooled_binary(heads, embed, renamed)
    return out


def _pooled_binary(heads: Heads, embed: EmbedFn, posts: Sequence[StanceExample]) -> dict:
    """P-Stance-style figures of ``posts`` scored towards their targets, pooled."""
    targets = _targets(posts)
    emb = dict(zip(targets, embed(targets), strict=True))
    probs = stance_probs(heads, embed([ex.text for ex in posts]), [ex.target for ex in posts], emb)
    row = stance_metrics(posts, probs, binary=True)["pooled"]
    return {key: row[key] for key in ("n", "macro_f1", "none_rate")}


def _sentiment_hold_outs(meta: dict) -> list[str | None]:
    """What each stage that learnt from sentiment posts held out: the run, then any
    sentiment-head refit on top of it."""
    refit = meta.get("training", {}).get("sentiment_head_refit")
    run = training_setting(meta, "sentiment_hold_out")
    return [run] + ([refit.get("hold_out")] if refit else [])


def oot_held_out(meta: dict) -> bool:
    """Was the run trained without the out-of-time dev posts? (Runs before issue 10 were
    not: their out-of-time figure is a training-set figure.)"""
    return all(h in SENTIMENT_HOLD_OUTS.values() for h in _sentiment_hold_outs(meta))


def oot_later_year(meta: dict) -> bool:
    """Is the out-of-time dev set a later year than all the run's sentiment training? Not
    when the rest of that year trained (``--sentiment-hold-out dev-sample``)."""
    return all(h == OUT_OF_TIME_ORIGIN for h in _sentiment_hold_outs(meta))


def excluded_targets(directory: Path) -> list[str]:
    """The stance targets a run was trained without; an error for a run that saw them all."""
    from models.scorer import read_meta

    config = read_meta(directory).get("training", {}).get("config", {})
    excluded = list(config.get("exclude_targets") or [])
    if not excluded:
        raise ValueError(f"{directory} was trained on every target (no --exclude-target)")
    return excluded


def held_out_metrics(directory: Path, root: Path | str) -> dict[str, dict]:
    """Stance on the targets a run was trained without (``train --exclude-target``).

    Recomputed from the run's saved files, so the card's held-out numbers can be checked.
    """
    from models.scorer import load_model

    excluded = excluded_targets(directory)
    encoder, heads, meta = load_model(directory)
    training = meta.get("training", {})
    val = load_stance(root, "pstance_val") + load_stance(root, "tweeteval_val")
    out = {}
    for target in excluded:
        test = [ex for ex in val if ex.target == target]
        if not test:
            raise ValueError(f"no validation posts for held-out target {target!r}")
        emb = {target: encoder.encode([target])[0]}
        probs = stance_probs(
            heads, encoder.encode([ex.text for ex in test]), [target] * len(test), emb
        )
        binary = all(ex.label != "none" for ex in test)
        out[target] = stance_metrics(test, probs, binary=binary)[target] | {
            "train_minutes": round(float(training.get("train_seconds", 0)) / 60, 1),
            "steps": training.get("steps_done"),
        }
    return out


# Which dev sets each head's calibration is fitted on; sentiment also gets a class-prior
# bias (the later year's class mix), the others only a temperature. Sentiment is fitted on
# the out-of-time posts in the later-year test's spelling, the set models are chosen on
# (model card, "Session 12": fitted on them as written, the bias leans further from neutral).
CALIBRATION_FIT = {
    "sentiment": (OOT_TWEETEVAL_SPELLING,),
    "stance": ("pstance_val", "tweeteval_stance_val"),
    "emotion": ("emotion_val",),
}
LABELS = {"sentiment": SENTIMENT_LABELS, "stance": STANCE_LABELS, "emotion": EMOTION_LABELS}


def fit_calibration(sets: dict[str, DevSet], *, balanced: bool = True) -> tuple[dict, dict]:
    """Per-head parameters (fitted on all of each head's dev data) and a report whose
    "after" figures are cross-fitted (fit on one half, scored on the other), so they are
    still held-out numbers. ``balanced``: the sentiment bias targets macro-recall."""
    from models.calibration import cross_fit, ece, fit, reliability, softmax

    params: dict = {}
    report: dict = {}
    for head, names in CALIBRATION_FIT.items():
        logits = np.concatenate([sets[n].logits for n in names])
        gold = [g for n in names for g in sets[n].gold]
        y = np.array([LABELS[head].index(g) for g in gold])
        idx = np.arange(len(y))
        # Contiguous halves for the (shuffled) out-of-time set, alternate rows otherwise.
        halves = (idx[: len(y) // 2], idx[len(y) // 2 :]) if head == "sentiment" else (
            idx[::2], idx[1::2])  # fmt: skip
        kw = {"bias": True, "balanced": balanced} if head == "sentiment" else {}
        params[head] = fit(logits, y, **kw) | {"fitted_on": list(names), "n": len(y)}
        before, after = softmax(logits), cross_fit(head, logits, y, halves, **kw)
        report[head] = {
            "dev": "+".join(names),
            "n": len(y),
            "ece_before": round(ece(before, y), 4),
            "ece_after": round(ece(after, y), 4),
            "nll_before": round(_nll(before, y), 4),
            "nll_after": round(_nll(after, y), 4),
            "reliability": {"softmax": reliability(before, y), "calibrated": reliability(after, y)},
        }
        if head == "sentiment":
            report[head]["cross_fitted"] = classification_metrics(gold, after, SENTIMENT_LABELS)
            report[head]["objective"] = "class-balanced NLL" if balanced else "NLL"
    return params, report


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(probs[np.arange(len(y)), y].clip(1e-12))))
