"""Keep the metrics in ``models/MODEL_CARD.md`` in sync with ``artifacts/metrics.json``.

python -m models.card          # rewrite the block between the metrics markers
"""

from __future__ import annotations

from pathlib import Path

from models.cpu import describe
from models.paths import ARTIFACTS_DIR
from models.report import LOTO_KEYS, OOT_TWEETEVAL_SPELLING, SENTIMENT_DEV_SETS

CARD = Path(__file__).resolve().parent / "MODEL_CARD.md"
START, END = "<!-- metrics:start -->", "<!-- metrics:end -->"


def render(metrics: dict, meta: dict, version: str, calibration: dict | None = None) -> str:
    """Markdown tables of every metric in metrics.json."""
    s, e = metrics["sentiment"], metrics["emotion"]
    training = meta.get("training", {})
    encoder = (
        f"LoRA rank {meta['lora']['rank']}"
        if meta.get("lora")
        else f"fully fine-tuned, delta stored as {meta['encoder_delta'].get('form')}"
        if meta.get("encoder_delta")
        else "frozen encoder"
    )
    lines = [
        f"Model version: `{version}` (trained {meta.get('trained_at', '?')}, "
        f"{encoder}"
        f"{', ' + str(training.get('steps_done')) + ' steps' if 'steps_done' in training else ''}"
        ").",
        "",
        _runtime_line(metrics),
        "",
        "| task | metric (validation split) | value |",
        "|---|---|---|",
        f"| sentiment | macro-averaged recall (TweetEval val, n={s['n']}) | "
        f"**{s['macro_recall']:.3f}** |",
        f"| sentiment | macro-F1 / accuracy | {s['macro_f1']:.3f} / {s['accuracy']:.3f} |",
    ]
    if "sentiment_oot" in metrics:
        o = metrics["sentiment_oot"]
        held = "held out of" if o.get("held_out_of_training", True) else "NOT held out of"
        if o.get("held_out_of_training", True) and o.get("later_year") is False:
            held = "held out of training; the rest of that year is in"
        lines += [
            f"| sentiment | macro-averaged recall (out-of-time dev: {o['origin']}, "
            f"{held} training, n={o['n']}) | **{o['macro_recall']:.3f}** |",
            f"| sentiment | out-of-time gap to TweetEval val | "
            f"{o['macro_recall'] - s['macro_recall']:+.3f} |",
        ]
    if OOT_TWEETEVAL_SPELLING in metrics:
        o = metrics[OOT_TWEETEVAL_SPELLING]
        lines.append(
            "| sentiment | macro-averaged recall (out-of-time dev spelt as the later-year "
            f"test: mentions `@user`, links removed) | **{o['macro_recall']:.3f}** |"
        )
    lines += [
        f"| emotion | macro-F1 (TweetEval val, n={e['n']}) | **{e['macro_f1']:.3f}** |",
        f"| emotion | accuracy | {e['accuracy']:.3f} |",
        "",
        "P-Stance validation (favor/against; prediction = larger of favor/against):",
        "",
        "| target | n | macro-F1 | F1avg with 3-way prediction | predicted none |",
        "|---|---|---|---|---|",
    ]
    for target, row in metrics["pstance"].items():
        lines.append(
            f"| {target} | {row['n']} | **{row['macro_f1']:.3f}** | {row['f1avg']:.3f} | "
            f"{row['none_rate']:.1%} |"
        )
    lines += _sentiment_recall_table(metrics)
    lines += [
        "",
        "TweetEval stance validation (F1avg = mean F1 of favor and against, 3-way prediction):",
        "",
        "| target | n | F1avg |",
        "|---|---|---|",
    ]
    for target, row in metrics["tweeteval_stance"].items():
        lines.append(f"| {target} | {row['n']} | {row['f1avg']:.3f} |")
    if "weak_trump_3way" in metrics:
        w = metrics["weak_trump_3way"]
        lines += [
            "",
            f"3-way check with `none` (SemEval-2016 6B weak Trump set, {w['n']} posts kept out of "
            f"training; labels come from hashtags, so noisy): F1avg **{w['f1avg']:.3f}**, accuracy "
            f"{w['accuracy']:.3f}, `none` predicted {w['none_share_pred']:.0%} vs "
            f"{w['none_share_gold']:.0%} in the labels.",
        ]
    if "calibration" in metrics:
        lines += _calibration_table(metrics["calibration"], calibration or {})
    if any(key in metrics for key, _ in LOTO_KEYS):
        lines += [
            "",
            "Leave-one-target-out (the target's data removed from training, tested on it):",
            "",
            "| held-out target | encoder (training) | F1avg (3-way) | macro-F1 favor/against |",
            "|---|---|---|---|",
        ]
        for key, enc in LOTO_KEYS:
            for target, row in metrics.get(key, {}).items():
                mf1 = f"{row['macro_f1']:.3f}" if "macro_f1" in row else "n/a"
                if row.get("train_minutes"):
                    enc_text = f"{enc} ({row['train_minutes']:.0f} min, {row['steps']} steps)"
                else:
                    enc_text = f"{enc} ({row['note']})" if row.get("note") else enc
                lines.append(f"| {target} | {enc_text} | {row['f1avg']:.3f} | {mf1} |")
        for key, enc in LOTO_KEYS[1:]:  # the frozen rows explain themselves
            if f"{key}_note" in metrics:
                lines += ["", f"{enc[0].upper() + enc[1:]} rows: {metrics[key + '_note']}."]
    if "handwritten_unseen" in metrics:
        lines += [
            "",
            "Targets without labelled data, 30 posts written by the model author "
            "(a sanity check, not a benchmark):",
            "",
            "| target | n | accuracy (favor/against/none) | F1avg |",
            "|---|---|---|---|",
        ]
        for target, row in metrics["handwritten_unseen"].items():
            if isinstance(row, dict):
                lines.append(
                    f"| {target} | {row['n']} | {row['accuracy']:.3f} | {row['f1avg']:.3f} |"
                )
    if "renamed_targets" in metrics:
        renamed = metrics["renamed_targets"]
        lines += [
            "",
            f"Stance towards names without labels ({renamed['note']}, the person renamed "
            "to each name and scored towards it; every post takes a side, so `none` should "
            "be rare):",
            "",
            "| scored towards | n | macro-F1 (favor/against) | predicted none |",
            "|---|---|---|---|",
        ]
        for target, row in renamed.items():
            if isinstance(row, dict):
                lines.append(
                    f"| {target} | {row['n']} | {row['macro_f1']:.3f} | {row['none_rate']:.1%} |"
                )
    if "simulated_event" in metrics:
        sim = metrics["simulated_event"]
        stance = ", ".join(f"{t} {r['f1avg']:.3f}" for t, r in sim["stance"].items())
        lines += [
            "",
            f"Simulated `{sim['event']}` posts ({sim['n']} distinct originals, truth from the "
            f"project's own simulator templates, so not a real-world measure): sentiment "
            f"macro-recall {sim['sentiment_macro_recall']:.3f}, topic accuracy "
            f"{sim['topic_accuracy']:.3f} ({len(sim['stance'])} targets; stance F1avg "
            f"{stance}).",
        ]
    if "simulated_cohorts" in metrics:
        c = metrics["simulated_cohorts"]
        lines += [
            "",
            f"Cohort calls over a whole simulated `{c['event']}` run ({c['posts']} posts, "
            f"{c['authors']} authors, {c['voters_with_silent_bio']:.0%} of the voters with "
            "bios that say nothing political; "
            f"history counts after {c['min_posts']} stance posts), per post, against the "
            "simulator's truth (media and spam accounts are truly `unknown`):",
            "",
            "| calls from | accuracy | macro-recall | recall moderate / left / right / unknown "
            "| called unknown |",
            "|---|---|---|---|---|",
        ]
        for key, name in (("bio_only", "bio rules only"), ("with_history", "bio + history")):
            row = c[key]
            recall = " / ".join(f"{row['recall'][k]:.2f}" for k in row["recall"])
            lines.append(
                f"| {name} | {row['accuracy']:.3f} | {row['macro_recall']:.3f} | {recall} | "
                f"{row['called_unknown']:.1%} |"
            )
    if "unrelated_target_none_rate" in metrics:
        rates = ", ".join(f"{k} {v:.0%}" for k, v in metrics["unrelated_target_none_rate"].items())
        lines += [
            "",
            f"P-Stance posts scored towards targets they never mention, share predicted "
            f"`none`: {rates} (Taylor Swift is one of the training distractors).",
        ]
    if "cohort_benchmark" in metrics:
        from models.cohort_bench import render as render_cohorts

        lines += [
            "",
            "**Cohorts** (who is called `moderate`):",
            "",
            render_cohorts(metrics["cohort_benchmark"]),
        ]
    return "\n".join(lines)


def _sentiment_recall_table(metrics: dict) -> list[str]:
    """Per-class recall on both sentiment dev sets, with and without calibration."""
    rows = [(name, f"{key}_raw", key) for key, name in SENTIMENT_DEV_SETS]
    if not any(k in metrics for _, _, k in rows[1:]):
        return []
    lines = [
        "",
        "Sentiment recall per class (calibrated = the scorer's probabilities; on the set the "
        "sentiment calibration is fitted on, the calibrated row is cross-fitted: bias fitted on "
        "one half, scored on the other; the other out-of-time row uses the stored bias, fitted "
        "on the same posts in the other spelling):",
        "",
        "| dev set | probabilities | macro-recall | negative | neutral | positive |",
        "|---|---|---|---|---|---|",
    ]
    report = metrics.get("calibration", {}).get("sentiment", {})
    cal, fitted_on = report.get("cross_fitted"), report.get("dev", "sentiment_oot")
    for name, raw_key, key in rows:
        variants = [("softmax", metrics.get(raw_key, metrics.get(key)))]
        if raw_key in metrics:
            variants.append(("calibrated", cal if key == fitted_on else metrics[key]))
        for kind, m in variants:
            if not m or "recall" not in m:
                continue
            r = m["recall"]
            lines.append(
                f"| {name} | {kind} | {m['macro_recall']:.3f} | {r['negative']:.3f} | "
                f"{r['neutral']:.3f} | {r['positive']:.3f} |"
            )
    return lines


def _calibration_table(report: dict, params: dict) -> list[str]:
    lines = [
        "",
        "Calibration (`calibration.json`, `probs = softmax(logits / T + b)`; expected "
        'calibration error of the top label, 15 bins; "after" is cross-fitted on two halves '
        "of the dev set, the stored parameters are fitted on all of it):",
        "",
        "| head | fitted on (n) | T | bias b | ECE before → after | NLL before → after |",
        "|---|---|---|---|---|---|",
    ]
    for head, r in report.items():
        p = params.get(head, {})
        bias = " / ".join(f"{v:+.2f}" for v in p["bias"]) if p.get("bias") else "—"
        temp = f"{p['temperature']:.2f}" if "temperature" in p else "?"
        lines.append(
            f"| {head} | {r['dev']} ({r['n']}) | {temp} | {bias} | {r['ece_before']:.3f} → "
            f"**{r['ece_after']:.3f}** | {r['nll_before']:.3f} → {r['nll_after']:.3f} |"
        )
    lines += ["", "![reliability per head, before and after](artifacts/reliability.png)"]
    return lines


def _measured(runtime: str, where: dict | None) -> str:
    """``runtime`` with the numerics and CPU it ran with, where the metrics recorded them."""
    if not where:
        return runtime
    return f"{runtime} ({describe(where)})"


def _runtime_line(metrics: dict) -> str:
    """Which runtime the figures come from (the issue: the card measures what ships)."""
    runtime = metrics.get("runtime", "torch-fp32 (recorded before evaluation named its runtime)")
    calibrated = metrics.get("calibration_runtime")
    line = f"Figures below are encoded on **{_measured(runtime, metrics.get('measured_on'))}**"
    if calibrated:
        where = metrics.get("calibration_measured_on")
        line += f"; calibration was fitted on {_measured(calibrated, where)} logits"
    return line + (
        " (`swingdial models eval` and `calibrate` encode on the runtime the worker picks on "
        "that machine unless `--precision` names another)."
    )


def rendered_card(directory: Path = ARTIFACTS_DIR, card: Path = CARD) -> str:
    """The card's text with its metrics block rendered from the artifacts."""
    from models.artifact_store import read_calibration, read_manifest, read_metrics
    from models.scorer import model_version

    meta = read_manifest(directory)
    block = render(
        read_metrics(directory), meta, model_version(directory, meta), read_calibration(directory)
    )
    head, _, rest = card.read_text().partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{block}\n{END}{tail}"


def update_card(directory: Path = ARTIFACTS_DIR, card: Path = CARD) -> None:
    card.write_text(rendered_card(directory, card))


if __name__ == "__main__":
    update_card()
