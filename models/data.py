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
# (Harris, Musk), so the model is not taught that those always score none.
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
    weak = load_stance(root, "semeval2016_trump_weak")
    rng.shuffle(weak)
    real += weak[:weak_limit]
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
        pats = _NAME_PATTERNS.get(ex.target)
        if pats is None or ex.label == "none" or rng.random() > share:
            continue
        if not re.search("|".join(pats), ex.text, flags=re.IGNORECASE):
            continue
        first, last = rng.choice(FICTIONAL_PEOPLE)
        text = re.sub(pats[0], f"{first} {last}", ex.text, flags=re.IGNORECASE)
        text = re.sub(pats[1], last, text, flags=re.IGNORECASE)
        text = re.sub(pats[2], first, text, flags=re.IGNORECASE)
        out.append(StanceExample(text, f"{first} {last}", ex.label, "swap"))
    return out
