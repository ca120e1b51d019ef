"""Synthetic-author benchmark of the cohort calls, made from real validation tweets.

python -m models.cohort_bench            # print the figures (run under the CPU lock)
python -m models.cohort_bench --write    # also store them in metrics.json and the card

Authors with bios that say nothing political, each posting 1-8 real, human-labelled tweets
(P-Stance val, the half the confusion matrix was *not* measured on; see
:mod:`models.cohort_confusion`):

- partisans: every post favors their side's candidate or opposes the other side's
  (pro-Trump / anti-Biden / anti-Sanders, or the mirror image);
- cross-pressured (the truth for ``moderate``): a pair of candidates across the aisle,
  both favored or both opposed (pro-Trump and pro-Sanders, anti-Trump and anti-Biden...);
- issue posters: tweets with no stance on any candidate (TweetEval val: atheism,
  climate, feminism, abortion), who should stay unplaced.

Every tweet is scored by the shipped model towards all four candidates, as the worker
scores every post towards every target, and each author's last call after all their
posts is compared with the truth. The old count rule (3+ stance posts, a 75% majority
gives a lean, anything else ``moderate``) runs on the same authors for comparison, and the
same recipe with 9-20 and 21-40 posts per author shows how much history a call needs.
"""

from __future__ import annotations

import argparse
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.cohort import (
    COHORTS,
    DEFAULT_TARGET_SIDES,
    LEAN_LEFT,
    LEAN_RIGHT,
    MODERATE,
    UNPLACED,
    CohortHistory,
    cohort_from_bio,
    decide,
)
from models.cohort_confusion import PSTANCE_CANDIDATES, Tweet, half, no_stance_on_candidates
from models.paths import DEFAULT_SHARED_DATA

ISSUE = "issue_only"  # truth of authors who take no stance on candidates: not moderate
MIX = {LEAN_LEFT: 0.35, LEAN_RIGHT: 0.35, MODERATE: 0.2, ISSUE: 0.1}


@dataclass
class Author:
    truth: str  # lean_left / lean_right / moderate (cross-pressured) / issue_only
    posts: list[str]


def _aligned(side: str, target: str) -> str:
    """The label a ``side`` partisan gives ``target``."""
    return "favor" if DEFAULT_TARGET_SIDES[target] == side else "against"


def make_authors(
    tweets: Sequence[Tweet],
    n_authors: int = 3000,
    *,
    seed: int = 11,
    posts: tuple[int, int] = (1, 8),
) -> list[Author]:
    """Authors from the benchmark half of the tweets (see the module docstring)."""
    rng = random.Random(seed)
    bench = [t for t in tweets if half(t.text) == "benchmark"]
    pool: dict[tuple[str, str], list[str]] = {}
    for t in bench:
        if t.target in PSTANCE_CANDIDATES:
            pool.setdefault((t.target, t.label), []).append(t.text)
    issue = [t.text for t in bench if no_stance_on_candidates(t)]
    left_targets = [t for t in PSTANCE_CANDIDATES if DEFAULT_TARGET_SIDES[t] == LEAN_LEFT]
    right = [t for t in PSTANCE_CANDIDATES if DEFAULT_TARGET_SIDES[t] == LEAN_RIGHT][0]
    kinds, weights = zip(*MIX.items(), strict=True)
    authors = []
    for _ in range(n_authors):
        truth = rng.choices(kinds, weights)[0]
        n = rng.randint(*posts)
        if truth == ISSUE:
            authors.append(Author(truth, rng.sample(issue, n)))
            continue
        if truth == MODERATE:  # same label on a candidate of each side
            label = rng.choice(["favor", "against"])
            leans = [(right, label), (rng.choice(left_targets), label)]
        else:
            leans = [(t, _aligned(truth, t)) for t in PSTANCE_CANDIDATES]
        texts: list[str] = []
        while len(texts) < n:
            text = rng.choice(pool[rng.choice(leans)])
            if text not in texts:
                texts.append(text)
        authors.append(Author(truth, texts))
    return authors


def count_rule(history: CohortHistory, min_posts: int = 3, lean_share: float = 0.75) -> str:
    """The rule this benchmark replaced: raw counts, a mixed record means ``moderate``."""
    pts = history.points()
    total = pts[LEAN_LEFT] + pts[LEAN_RIGHT]
    if history.stance_posts < min_posts or total == 0:
        return UNPLACED
    top = LEAN_LEFT if pts[LEAN_LEFT] >= pts[LEAN_RIGHT] else LEAN_RIGHT
    return top if pts[top] / total >= lean_share else MODERATE


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% interval of a proportion (few moderate calls: the interval matters)."""
    if n == 0:
        return None
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half_width = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(centre - half_width, 4), round(centre + half_width, 4)


def _moderate_scores(truth: Sequence[str], calls: Sequence[str]) -> dict[str, Any]:
    called = sum(c == MODERATE for c in calls)
    hit = sum(c == MODERATE and t == MODERATE for t, c in zip(truth, calls, strict=True))
    actual = sum(t == MODERATE for t in truth)
    return {
        "called_moderate": called,
        "precision": round(hit / called, 4) if called else None,
        "precision_95ci": wilson(hit, called),
        "recall": round(hit / actual, 4) if actual else None,
    }


def run_benchmark(
    authors: Sequence[Author],
    stance: Mapping[str, Mapping[str, Any]],
    *,
    min_posts: int = 3,
) -> dict[str, Any]:
    """Each author's final call (bio silent, history of all their posts) against the truth.

    ``stance``: text -> target -> the model's call (``{"label", "scores"}`` or a label).
    """
    truth, calls, legacy, lengths = [], [], [], []
    silent_bio = cohort_from_bio("")
    for author in authors:
        history = CohortHistory()
        for text in author.posts:
            history.add(stance[text])
        truth.append(author.truth)
        calls.append(decide(silent_bio, history, min_posts=min_posts)[0])
        legacy.append(count_rule(history, min_posts))
        lengths.append(len(author.posts))
    leans = [(t, c) for t, c in zip(truth, calls, strict=True) if c in (LEAN_LEFT, LEAN_RIGHT)]
    by_length = {}
    for lo, hi in ((1, 2), (3, 5), (6, 8)):
        idx = [i for i, n in enumerate(lengths) if lo <= n <= hi]
        by_length[f"{lo}-{hi} posts"] = _moderate_scores(
            [truth[i] for i in idx], [calls[i] for i in idx]
        ) | {"authors": len(idx)}
    table = Counter(zip(truth, calls, strict=True))
    return {
        "authors": len(authors),
        "truth": dict(Counter(truth)),
        "min_posts": min_posts,
        "moderate": _moderate_scores(truth, calls),
        "moderate_count_rule": _moderate_scores(truth, legacy),
        "lean_accuracy": round(sum(t == c for t, c in leans) / len(leans), 4) if leans else None,
        "called": {c: sum(x == c for x in calls) for c in COHORTS if c in calls},
        "unplaced": sum(c == UNPLACED for c in calls),
        "by_length": by_length,
        "truth_x_call": {t: {c: table[(t, c)] for c in COHORTS if table[(t, c)]} for t in MIX},
    }


LONGER = ((9, 20), (21, 40))  # how the calls change when authors post more


def benchmark(root: Any, n_authors: int = 3000, seed: int = 11) -> dict[str, Any]:
    """The benchmark with the shipped model's calls (scored once, then cached).

    The headline is 1-8 posts per author; the same recipe with longer histories
    (``LONGER``) shows how much history a confident call needs.
    """
    from models.cohort import load_confusion
    from models.cohort_confusion import load_tweets, score_stance

    tweets = load_tweets(root)
    runs = {}
    for lo, hi in ((1, 8), *LONGER):
        authors = make_authors(tweets, n_authors, seed=seed, posts=(lo, hi))
        stance = score_stance(sorted({p for a in authors for p in a.posts}))
        runs[f"{lo}-{hi}"] = run_benchmark(authors, stance)
    result = runs.pop("1-8")
    keep = ("moderate", "moderate_count_rule", "lean_accuracy", "unplaced", "authors")
    return result | {
        "longer_histories": {k: {f: r[f] for f in keep} for k, r in runs.items()},
        "seed": seed,
        "posts_per_author": "1-8",
        "confusion_matrix_of": load_confusion().version,
        "command": "python -m models.cohort_bench",
    }


def render(result: Mapping[str, Any]) -> str:
    """The "Cohorts" section of the model card (also what the command prints)."""
    m, old = result["moderate"], result["moderate_count_rule"]
    truth = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in result["truth"].items())

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.0%}"

    def ci(row: Mapping[str, Any]) -> str:
        lo_hi = row["precision_95ci"]
        return "" if lo_hi is None else f" ({lo_hi[0]:.0%}–{lo_hi[1]:.0%})"

    lines = [
        f"Synthetic authors from real P-Stance / TweetEval validation tweets "
        f"({result['authors']} authors, {result['posts_per_author']} posts each, bios silent: "
        f"{truth}; `{result['command']}`, stance calls by `{result['confusion_matrix_of']}`):",
        "",
        "| rule | called moderate | moderate precision (95% CI) | moderate recall |",
        "|---|---|---|---|",
        f"| posterior (shipped) | {m['called_moderate']} | **{pct(m['precision'])}**{ci(m)} | "
        f"{pct(m['recall'])} |",
        f"| raw counts (before) | {old['called_moderate']} | {pct(old['precision'])}{ci(old)} "
        f"| {pct(old['recall'])} |",
        "",
        "| posts per author | authors | called moderate | precision | recall |",
        "|---|---|---|---|---|",
    ]
    for name, row in result["by_length"].items():
        lines.append(
            f"| {name} | {row['authors']} | {row['called_moderate']} | {pct(row['precision'])} "
            f"| {pct(row['recall'])} |"
        )
    lines += [
        "",
        f"Unplaced: {result['unplaced']} of {result['authors']} authors; side called right for "
        f"{pct(result['lean_accuracy'])} of the lean calls. Calls per truth: "
        + "; ".join(
            f"{t.replace('_', ' ')} → " + ", ".join(f"{c} {n}" for c, n in row.items())
            for t, row in result["truth_x_call"].items()
        )
        + ".",
    ]
    if result.get("longer_histories"):
        lines += [
            "",
            "Same recipe, authors who post more:",
            "",
            "| posts per author | authors | called moderate | precision (95% CI) | recall | "
            "raw counts: precision / recall | unplaced | side right |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in result["longer_histories"].items():
            m, old = r["moderate"], r["moderate_count_rule"]
            lines.append(
                f"| {name} | {r['authors']} | {m['called_moderate']} | {pct(m['precision'])}"
                f"{ci(m)} | {pct(m['recall'])} | {pct(old['precision'])} / "
                f"{pct(old['recall'])} | {r['unplaced']} | {pct(r['lean_accuracy'])} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_SHARED_DATA)
    parser.add_argument("--authors", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--write", action="store_true", help="store in metrics.json + card")
    args = parser.parse_args(argv)
    result = benchmark(args.data, args.authors, args.seed)
    print(render(result))
    if args.write:
        from models.artifact_store import PACKAGED_DIR, update_metrics
        from models.card import update_card

        path = update_metrics(PACKAGED_DIR, {"cohort_benchmark": result})
        update_card()
        print(f"wrote cohort_benchmark to {path} and the model card")


if __name__ == "__main__":
    main()
