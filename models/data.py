"""Read the labelled data in ``settings.shared_data`` (never copied into the repo).

Also builds the stance training set: real target-conditioned labels plus "none" pairs
(a post paired with a target it does not talk about), so that a post about Trump scores
``none`` towards, say, Elon Musk.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

SENTIMENT_LABELS = ["negative", "neutral", "positive"]
STANCE_LABELS = ["favor", "against", "none"]
EMOTION_LABELS = ["anger", "joy", "optimism", "sadness"]
PSTANCE_TARGETS = ["Donald Trump", "Joe Biden", "Bernie Sanders"]

# Names used only as "unrelated target" negatives; deliberately not the default targets
# (Harris, Musk), so the model is not taught that those always score none. They are taught
# exactly that about themselves and their neighbours: the shipped model calls Putin `none`
# in 82% of posts that take a side on him, and a run without Trump's data called Trump
# (nearest name: Putin) `none` always (model card, "Session 19"; `renamed_targets`).
DISTRACTOR_TARGETS = [
    "Taylor Swift",
    "Tom Brady",
    "Apple",
    "Bitcoin",
    "the Federal Reserve",
    "Vladimir Putin",
    "Pope Francis",
    "Manchester United",
    "Tesla",
    "LeBron James",
    "Netflix",
    "Greta Thunberg",
    "Gun Control",
    "Nuclear Energy",
    "Oprah Winfrey",
    "Mark Zuckerberg",
]

# Surnames/keywords per target: a text that mentions one of these is not used as an
# "unrelated" negative for that target.
_MENTIONS = {
    "Donald Trump": ["trump", "donald", "maga", "potus", "realdonaldtrump"],
    "Joe Biden": ["biden", "joe"],
    "Bernie Sanders": ["bernie", "sanders", "feelthebern"],
    "Hillary Clinton": ["hillary", "clinton"],
    "Legalization of Abortion": ["abortion", "prolife", "pro-life", "prochoice", "pro-choice"],
    "Feminist Movement": ["femin"],
    "Atheism": ["athei", "god", "religion"],
    "Climate Change is a Real Concern": ["climate", "global warming"],
}


# Fictional people used by the entity-swap augmentation (see :func:`entity_swap`).
FICTIONAL_PEOPLE = [
    ("Laura", "Whitfield"), ("Marcus", "Delgado"), ("Helen", "Okafor"), ("Victor", "Lindqvist"),
    ("Dana", "Petrakis"), ("Samuel", "Brandt"), ("Rosa", "Villanueva"), ("Curtis", "Holloway"),
    ("Irene", "Castellano"), ("Walter", "Pryce"), ("Naomi", "Fairbanks"), ("Gregory", "Achterberg"),
    ("Priya", "Raman"), ("Dexter", "Monroe"), ("Yvonne", "Galloway"), ("Tobias", "Renner"),
    ("Carmen", "Ostrowski"), ("Howard", "Kessler"), ("Amara", "Nwosu"), ("Frank", "Delacroix"),
]  # fmt: skip
# Full name, then surname / first name patterns, per person target with data.
_NAME_PATTERNS = {
    "Donald Trump": (r"donald\s+(?:j\.?\s*)?trump|realdonaldtrump", r"trump", r"donald"),
    "Joe Biden": (r"joe\s+biden|joebiden", r"biden", r"\bjoe\b"),
    "Bernie Sanders": (r"bernie\s+sanders|berniesanders", r"sanders", r"bernie"),
    "Hillary Clinton": (r"hillary\s+(?:rodham\s+)?clinton|hillaryclinton", r"clinton", r"hillary"),
}


@dataclass(frozen=True)
class StanceExample:
    text: str
    target: str
    label: str
    source: str  # pstance | tweeteval | weak | negative


def data_dir(root: Path | str) -> Path:
    path = Path(root)
    if not (path / "DATA.md").exists() and not (path / "sentiment").is_dir():
        raise FileNotFoundError(
            f"no labelled data in {path}; set SWINGDIAL_SHARED_DATA to the shared data folder"
        )
    return path


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_labelled(root: Path | str, task: str, split: str) -> tuple[list[str], list[str]]:
    """Texts and labels of ``sentiment`` or ``emotion``; split ``train`` or ``val``."""
    rows = read_jsonl(data_dir(root) / task / f"{split}.jsonl")
    return [r["text"] for r in rows], [r["label"] for r in rows]


# The latest SemEval sentiment file: held out of training as the out-of-time dev set (the
# TweetEval val split is drawn from the same 2013-16 pool as training and overstates what a
# later year gets; the field's test split is SemEval-2017).
OUT_OF_TIME_ORIGIN = "twitter-2016test"
OUT_OF_TIME_DEV_N = 4000  # seeded sample of that origin: two halves of 2,000 for cross-fitting
WEAK_DEV_N = 2000  # weak SemEval Trump posts kept out of training for the 3-way check


# What of the latest origin stays out of sentiment training. The whole origin (the default)
# makes the out-of-time dev set a later year than everything trained on: the honest estimate,
# and the one models are chosen on. Only the dev sample trains a chosen recipe on the rest of
# that year (16,212 posts, the closest to the test year); its dev figure is then same-year.
HOLD_OUT_DEV_SAMPLE = f"{OUT_OF_TIME_ORIGIN}:dev-sample"
SENTIMENT_HOLD_OUTS = {"year": OUT_OF_TIME_ORIGIN, "dev-sample": HOLD_OUT_DEV_SAMPLE}


def load_sentiment_train(
    root: Path | str, *, hold_out: str | None = OUT_OF_TIME_ORIGIN
) -> tuple[list[str], list[str]]:
    """Sentiment training texts and labels without what ``hold_out`` names: an origin, the
    out-of-time dev sample (:data:`HOLD_OUT_DEV_SAMPLE`) or nothing (``None``)."""
    rows = read_jsonl(data_dir(root) / "sentiment" / "train.jsonl")
    if hold_out == HOLD_OUT_DEV_SAMPLE:
        dev = {r["text"] for r in _oot_sample(rows)}
        rows = [r for r in rows if r["text"] not in dev]
    elif hold_out is not None:
        rows = [r for r in rows if r.get("origin") != hold_out]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def load_sentiment_oot(
    root: Path | str, *, n: int = OUT_OF_TIME_DEV_N, seed: int = 13
) -> tuple[list[str], list[str]]:
    """The out-of-time dev set: a seeded sample of the ``OUT_OF_TIME_ORIGIN`` rows.

    Rows ``[: n // 2]`` and ``[n // 2 :]`` are the two halves calibration is cross-fitted on.
    """
    rows = _oot_sample(read_jsonl(data_dir(root) / "sentiment" / "train.jsonl"), n, seed)
    return [r["text"] for r in rows], [r["label"] for r in rows]


def _oot_sample(rows: list[dict], n: int = OUT_OF_TIME_DEV_N, seed: int = 13) -> list[dict]:
    rows = [r for r in rows if r.get("origin") == OUT_OF_TIME_ORIGIN]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def weak_split(root: Path | str, seed: int) -> tuple[list[StanceExample], list[StanceExample]]:
    """Weak SemEval Trump posts: (training pool, 3-way dev set of ``WEAK_DEV_N``).

    The dev set is the tail of the seed-13 shuffle whatever the training seed, so no run
    trains on it (the training pool is the run's own shuffle minus those texts).
    """
    weak = load_stance(root, "semeval2016_trump_weak")
    fixed = weak[:]
    random.Random(13).shuffle(fixed)
    dev = fixed[-WEAK_DEV_N:]
    dev_texts = {ex.text for ex in dev}
    pool = weak[:]
    random.Random(seed).shuffle(pool)
    return [ex for ex in pool if ex.text not in dev_texts], dev


def load_stance(root: Path | str, name: str) -> list[StanceExample]:
    """One stance file, e.g. ``pstance_train``, ``tweeteval_val``, ``semeval2016_trump_weak``."""
    source = "pstance" if name.startswith("pstance") else "tweeteval"
    if "weak" in name:
        source = "weak"
    rows = read_jsonl(data_dir(root) / "stance" / f"{name}.jsonl")
    return [StanceExample(r["text"], r["target"], r["label"], source) for r in rows]


def mentions(text: str, target: str) -> bool:
    """Does the text name the target (or a close keyword)? Used to keep negatives clean."""
    low = text.lower()
    keys = _MENTIONS.get(target)
    if keys is None:
        keys = [w.lower() for w in re.findall(r"[A-Za-z]{3,}", target)]
    return any(k in low for k in keys)


def stance_train_set(
    root: Path | str,
    *,
    seed: int = 13,
    weak_limit: int = 8000,
    negative_ratio: float = 0.35,
    exclude_targets: tuple[str, ...] = (),
    generic_texts: list[str] | None = None,
    generic_n: int = 3000,
    swap_share: float = 0.0,
) -> list[StanceExample]:
    """P-Stance + TweetEval stance + (subsampled) weak SemEval Trump + "none" negatives.

    Negatives are (a) stance posts paired with a target they do not mention and (b) everyday
    posts (``generic_texts``, e.g. sentiment tweets) paired with any target: without (b) the
    head has never seen a non-political post and guesses favor/against for "banana bread".
    ``swap_share`` adds renamed copies (:func:`entity_swap`).
    ``exclude_targets`` drops a target entirely (leave-one-target-out evaluation).
    """
    rng = random.Random(seed)
    real = load_stance(root, "pstance_train") + load_stance(root, "tweeteval_train")
    rng.shuffle(load_stance(root, "semeval2016_trump_weak"))  # keeps the rng sequence of old runs
    real += weak_split(root, seed)[0][:weak_limit]
    real = [ex for ex in real if ex.target not in exclude_targets]
    targets = sorted({ex.target for ex in real})
    pool = [t for t in targets if t not in exclude_targets] + DISTRACTOR_TARGETS
    negatives: list[StanceExample] = []
    for ex in rng.sample(real, int(len(real) * negative_ratio)):
        for _ in range(5):
            other = rng.choice(pool)
            if other != ex.target and not mentions(ex.text, other):
                negatives.append(StanceExample(ex.text, other, "none", "negative"))
                break
    for text in rng.sample(generic_texts or [], min(generic_n, len(generic_texts or []))):
        other = rng.choice(pool)
        if not any(mentions(text, t) for t in targets) and not mentions(text, other):
            negatives.append(StanceExample(text, other, "none", "negative"))
    swaps = entity_swap(real, rng, swap_share) if swap_share > 0 else []
    out = real + negatives + swaps
    rng.shuffle(out)
    return out


def entity_swap(
    examples: list[StanceExample], rng: random.Random, share: float = 0.3
) -> list[StanceExample]:
    """Copies of person-target posts with the person renamed to a fictional one.

    Teaches the target-conditioned head to read "what does the post say about the person
    named in the target" instead of memorising Trump/Biden/Sanders; the only lever we have
    for targets without labelled data (Kamala Harris, Elon Musk).
    """
    out = []
    for ex in examples:
        if ex.target not in _NAME_PATTERNS or ex.label == "none" or rng.random() > share:
            continue
        if not names_person(ex.text, ex.target):
            continue
        first, last = rng.choice(FICTIONAL_PEOPLE)
        text = rename_person(ex.text, ex.target, first, last)
        out.append(StanceExample(text, f"{first} {last}", ex.label, "swap"))
    return out


def names_person(text: str, target: str) -> bool:
    """Whether ``text`` names the person ``target`` by the patterns :func:`rename_person`
    replaces (full name, surname, first name; only the person targets with labelled data
    have them). Narrower than :func:`mentions`, which also counts slogans and hashtags."""
    pats = _NAME_PATTERNS.get(target)
    return pats is not None and re.search("|".join(pats), text, flags=re.IGNORECASE) is not None


def rename_person(text: str, target: str, first: str, last: str) -> str:
    """``text`` with the person ``target`` renamed to ``first last``: the full name first,
    then the surname, then the first name (a text that does not name them is unchanged)."""
    full, surname, first_name = _NAME_PATTERNS[target]
    text = re.sub(full, f"{first} {last}", text, flags=re.IGNORECASE)
    text = re.sub(surname, last, text, flags=re.IGNORECASE)
    return re.sub(first_name, first, text, flags=re.IGNORECASE)
