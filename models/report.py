"""Metrics as text for people (the `swingdial models` commands print these)."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from models.cpu import describe

# metrics.json keys of the leave-one-target-out scores, and how each trained its encoder.
LOTO_KEYS = (("loto", "frozen"), ("loto_lora", "LoRA"), ("loto_full", "full fine-tuning"))
# metrics.json key (and dev-set name) of the out-of-time posts spelt as the later-year test.
OOT_TWEETEVAL_SPELLING = "sentiment_oot_tweeteval_spelling"
# The sentiment dev sets (metrics.json keys; calibrated runs add "<key>_raw", the plain
# argmax) and their names in reports and the card.
SENTIMENT_DEV_SETS = (
    ("sentiment", "TweetEval val (same pool as training)"),
    ("sentiment_oot", "out-of-time dev"),
    (OOT_TWEETEVAL_SPELLING, "out-of-time dev, spelt as the test (@user, no links)"),
)


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="simple", floatfmt=".3f")


def _recall(recall: dict[str, float], digits: int = 3) -> str:
    return ", ".join(f"{k} {v:.{digits}f}" for k, v in recall.items())


def metrics_report(m: dict[str, Any]) -> str:
    """Every metric a model's metrics.json holds, as a few short tables and lines."""
    out: list[str] = []
    if "runtime" in m:
        where = m.get("measured_on")
        numerics = f", {describe(where)}" if where else ""
        out.append(f"encoded on {m['runtime']}{numerics} (the runtime these figures come from)")
    rows = []
    for key, name in SENTIMENT_DEV_SETS:
        if key in m:
            s = m[key]
            if s.get("held_out_of_training") is False:
                name += " (NOT held out: this run trained on it)"
            elif s.get("later_year") is False:
                name += " (same year: the rest of that year trained)"
            rows.append([name, s["macro_recall"], s["macro_f1"], _recall(s.get("recall", {}))])
    if rows:
        out.append(_table(rows, ["sentiment", "macro-recall", "macro-F1", "recall"]))
    out.append(f"emotion macro-F1 {m['emotion']['macro_f1']:.3f}")
    out.append(
        _table(
            [[t, r["macro_f1"], r["f1avg"], r["none_rate"]] for t, r in m["pstance"].items()],
            ["P-Stance", "macro-F1 (favor/against)", "F1avg (3-way)", "none rate"],
        )
    )
    out.append(
        _table(
            [[t, r["f1avg"], r["n"]] for t, r in m["tweeteval_stance"].items()],
            ["TweetEval stance", "F1avg (3-way prediction)", "n"],
        )
    )
    if "weak_trump_3way" in m:
        w = m["weak_trump_3way"]
        out.append(
            f"weak Trump dev, 3-way (hashtag labels, noisy; n={w['n']}): F1avg {w['f1avg']:.3f}, "
            f"none predicted {w['none_share_pred']:.0%} vs {w['none_share_gold']:.0%} gold"
        )
    if "unrelated_target_none_rate" in m:
        rates = _recall(m["unrelated_target_none_rate"], 2)
        out.append(f"unrelated target -> none rate: {rates}")
    if "handwritten_unseen" in m:
        rows = [
            [t, r["accuracy"], r["f1avg"]]
            for t, r in m["handwritten_unseen"].items()
            if isinstance(r, dict)
        ]
        out.append(_table(rows, ["unseen targets (30 handwritten posts)", "accuracy", "F1avg"]))
    if "renamed_targets" in m:
        r = m["renamed_targets"]
        rows = [[t, v["macro_f1"], v["none_rate"]] for t, v in r.items() if isinstance(v, dict)]
        head = f"renamed targets ({r['note']})"
        out.append(_table(rows, [head, "macro-F1", "none rate"]))
    if "simulated_event" in m:
        sim = m["simulated_event"]
        stance = ", ".join(f"{t} {r['f1avg']:.3f}" for t, r in sim["stance"].items())
        out.append(
            f"simulated {sim['event']} (n={sim['n']}, simulator truth): sentiment macro-recall "
            f"{sim['sentiment_macro_recall']:.3f}, topic acc {sim['topic_accuracy']:.3f}, "
            f"stance F1avg {stance}"
        )
    if "simulated_cohorts" in m:
        c = m["simulated_cohorts"]
        rows = [
            [name.replace("_", " "), c[name]["accuracy"], c[name]["macro_recall"],
             _recall(c[name]["recall"], 2)]
            for name in ("with_history", "bio_only")
        ]  # fmt: skip
        title = f"cohort calls ({c['posts']} posts, {c['authors']} authors)"
        out.append(_table(rows, [title, "accuracy", "macro-recall", "recall per cohort"]))
    for key, _ in LOTO_KEYS:
        if key in m:
            rows = [[t, r["f1avg"], r.get("macro_f1")] for t, r in m[key].items()]
            title = m.get(key + "_note", "leave-one-target-out")
            out.append(_table(rows, [title, "F1avg", "macro-F1"]))
    return "\n\n".join(out)


def calibration_report(params: dict[str, Any], report: dict[str, Any]) -> str:
    """Per-head temperature (and bias) with the cross-fitted calibration error."""
    rows = [
        [head, params[head]["temperature"], params[head].get("bias", ""), r["ece_before"],
         r["ece_after"], r["dev"], r["n"]]
        for head, r in report.items()
    ]  # fmt: skip
    table = _table(rows, ["head", "T", "bias", "ECE before", "ECE after", "dev set", "n"])
    s = report["sentiment"]["cross_fitted"]
    return (
        f"{table}\n(after: cross-fitted, fit on one half of a dev set, scored on the other)\n"
        f"sentiment {report['sentiment']['dev']}, cross-fitted: macro-recall "
        f"{s['macro_recall']:.3f} "
        f"({_recall(s['recall'])})"
    )
