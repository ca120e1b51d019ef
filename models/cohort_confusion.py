"""The stance model's confusion matrix per target, for the cohort posterior.

python -m models.cohort_confusion     # score the validation tweets, write the JSON artifact

The cohort posterior (:func:`models.cohort.posterior`) reads a post's favor/against calls
*through* this matrix: how often the shipped model says favor/against/nothing when a tweet
truly favors a target, opposes it, or takes no stance on it. It is measured once with the
shipped model and stored next to it (``models/artifacts/cohort_confusion.json``) with its
provenance.

Data (validation splits in ``settings.shared_data``, never copied into the repo), split in
two halves by a hash of the text so the synthetic-author benchmark
(:mod:`models.cohort_bench`) never reads a tweet the matrix was measured on:

- favor/against rows of Trump, Biden, Sanders: P-Stance val, the "calibration" half;
- favor/against rows of Hillary Clinton: all of TweetEval val's Clinton tweets (the
  benchmark does not use them; there are only 51);
- the "none" row: TweetEval val tweets that take no stance on any candidate (atheism,
  climate, feminism, abortion, and Clinton tweets labelled none), calibration half,
  scored towards every candidate.

Scores are cached per model version under ``~/.cache/swingdial/cohort_scores`` (keys are
text hashes, no text), so reruns are cheap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.artifact_store import PACKAGED_DIR, write_confusion
from models.cohort import MIN_CONFIDENCE, stance_call
from models.data import read_jsonl
from models.paths import DEFAULT_SHARED_DATA

CANDIDATES: tuple[str, ...] = ("Donald Trump", "Joe Biden", "Bernie Sanders", "Hillary Clinton")
PSTANCE_CANDIDATES = CANDIDATES[:3]
LABELS = ("favor", "against", "none")
CACHE_DIR = Path.home() / ".cache" / "swingdial" / "cohort_scores"
PRECISION = "fp32"  # the matrix and the benchmark use full precision (bf16 flips ~1%)


@dataclass(frozen=True)
class Tweet:
    text: str
    target: str  # the target the human label is about
    label: str  # favor / against / none


def half(text: str) -> str:
    """Which half a tweet is in, "calibration" or "benchmark": stable, by a text hash."""
    return "calibration" if hashlib.sha1(text.encode()).digest()[0] % 2 else "benchmark"


def load_tweets(root: Path | str) -> list[Tweet]:
    """P-Stance val and TweetEval val stance tweets, de-duplicated by (text, target)."""
    rows = read_jsonl(Path(root) / "stance" / "pstance_val.jsonl")
    rows += read_jsonl(Path(root) / "stance" / "tweeteval_val.jsonl")
    seen: dict[tuple[str, str], Tweet] = {}
    for r in rows:
        seen.setdefault((r["text"], r["target"]), Tweet(r["text"], r["target"], r["label"]))
    return list(seen.values())


def no_stance_on_candidates(tweet: Tweet) -> bool:
    return tweet.target not in CANDIDATES or tweet.label == "none"


def _key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def score_stance(
    texts: Sequence[str], targets: Sequence[str] = CANDIDATES, *, cache_dir: Path = CACHE_DIR
) -> dict[str, dict[str, dict[str, Any]]]:
    """text -> target -> {"label", "scores"} from the shipped model, cached per model version.

    Loads the model only when some text is not cached yet; run it under the CPU lock.
    """
    from models.scorer import model_version

    version = model_version(PACKAGED_DIR)
    path = cache_dir / f"{version}-{PRECISION}.json"
    cache: dict[str, dict[str, dict[str, Any]]] = (
        json.loads(path.read_text()) if path.exists() else {}
    )
    missing = sorted(
        {t for t in texts if _key(t) not in cache or not set(targets) <= set(cache[_key(t)])}
    )
    if missing:
        from models.scorer import load_scorer

        scorer = load_scorer(targets=list(targets), artifacts=PACKAGED_DIR, precision=PRECISION)
        for text, out in zip(missing, scorer.score_texts(missing), strict=True):
            cache.setdefault(_key(text), {}).update(out["stance"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache))
    return {t: cache[_key(t)] for t in texts}


def _row() -> dict[str, int]:
    return dict.fromkeys(LABELS, 0)


def measure_confusion(
    tweets: Sequence[Tweet], stance: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, dict[str, dict[str, int]]]:
    """target -> true label -> predicted label (favor/against/none by the history's rule)."""
    matrix = {t: {lab: _row() for lab in LABELS} for t in CANDIDATES}
    for tweet in tweets:
        calibration = half(tweet.text) == "calibration"
        if no_stance_on_candidates(tweet):
            rows = [(t, "none") for t in CANDIDATES] if calibration else []
        elif tweet.target in PSTANCE_CANDIDATES:
            rows = [(tweet.target, tweet.label)] if calibration else []
        else:  # Clinton favor/against: too few to halve, and the benchmark never uses them
            rows = [(tweet.target, tweet.label)]
        for target, truth in rows:
            pred = stance_call(stance[tweet.text][target], MIN_CONFIDENCE) or "none"
            matrix[target][truth][pred] += 1
    return matrix


def pooled(matrix: dict[str, dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    out = {lab: _row() for lab in LABELS}
    for per in matrix.values():
        for truth, row in per.items():
            for pred, n in row.items():
                out[truth][pred] += n
    return out


def build_artifact(root: Path | str) -> dict[str, Any]:
    from models.scorer import model_version

    tweets = load_tweets(root)
    stance = score_stance([t.text for t in tweets])
    matrix = measure_confusion(tweets, stance)
    return {
        "about": "Counts of the stance model's calls (columns) per true stance (rows) and "
        "target; read by models.cohort.posterior. Targets not listed use 'pooled'.",
        "command": "python -m models.cohort_confusion",
        "model_version": f"{model_version(PACKAGED_DIR)}+{PRECISION}",
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d"),
        "call_rule": f"favor/against with probability >= {MIN_CONFIDENCE}, else none",
        "data": {
            "favor/against, Trump/Biden/Sanders": "P-Stance val, calibration half (text hash)",
            "favor/against, Hillary Clinton": "TweetEval val, all Clinton tweets",
            "none": "TweetEval val tweets with no stance on a candidate, calibration half, "
            "scored towards every candidate",
        },
        "targets": matrix,
        "pooled": pooled(matrix),
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Measure the stance confusion matrix.")
    parser.add_argument("--data", type=Path, default=DEFAULT_SHARED_DATA)
    artifact = build_artifact(parser.parse_args(argv).data)
    path = write_confusion(PACKAGED_DIR, artifact)
    for target, per in {**artifact["targets"], "pooled": artifact["pooled"]}.items():
        cells = "; ".join(
            f"{truth}: " + " ".join(f"{p[0]}{row[p]}" for p in LABELS) for truth, row in per.items()
        )
        print(f"{target:16} {cells}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
