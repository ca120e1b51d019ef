"""Which audience an author belongs to: moderate, lean_left, lean_right, unplaced or unknown.

Two signals, both explainable (every call carries the evidence that produced it):

1. :func:`cohort_from_bio` — phrases in the self-description ("swing voter", "MAGA",
   "vote blue", ...). Media outlets and spam accounts are ``unknown`` whatever they say,
   because they are not voters; a bio that says nothing political gives ``unplaced``.
2. :class:`CohortHistory` — a running count of an author's stance calls (favor/against per
   target), small and JSON-serialisable so the worker can keep one per author in a table.

:func:`decide` combines them: a self-description wins; for everyone else the
:func:`posterior` over author types (read through the stance model's measured confusion
matrix, so a mixed record of noisy *predictions* is not taken for a mixed *person*) names
the cohort only when it is confident. Everyone without positive evidence stays
``unplaced``. ``models/COHORTS.md`` is the same in plain words, for the dashboard.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from models.artifact_store import PACKAGED_DIR, read_confusion

NOTE_PATH = Path(__file__).resolve().parent / "COHORTS.md"  # "How cohorts are assigned"

MODERATE, LEAN_LEFT, LEAN_RIGHT = "moderate", "lean_left", "lean_right"
UNPLACED, UNKNOWN = "unplaced", "unknown"
# Every cohort label, in legend order (defined here once). ``unplaced``: a voter without
# positive evidence of a cohort; ``unknown``: not a voter (media, spam).
COHORTS: tuple[str, ...] = (MODERATE, LEAN_LEFT, LEAN_RIGHT, UNPLACED, UNKNOWN)
MIN_CONFIDENCE = 0.5  # a favor/against call below this probability is not counted

# Checked first and removed from the text, so "fiscally conservative, socially liberal" or
# "former Republican" do not also count as partisan phrases.
_CROSS_PRESSURED = [
    r"fiscally\s+conservative,?\s*(?:and\s+)?socially\s+(?:liberal|moderate|live\s+and\s+let\s+live)",
    r"socially\s+liberal,?\s*(?:and\s+)?fiscally\s+conservative",
    r"(?:former|ex-?|recovering|lifelong)\s+(?:democrat|republican|dem|gop)s?\b",
    r"not\s+a\s+(?:democrat|republican)(?:\s+(?:or|nor)\s+(?:a\s+)?(?:democrat|republican))?",
]
_MODERATE = [
    r"independent",
    r"undecided",
    r"swing\s+voter",
    r"swing\s+state\s+voter",
    r"moderates?",
    r"centris[tm]",
    r"center[-\s]right",
    r"center[-\s]left",
    r"both\s+(?:parties|sides)",
    r"neither\s+party",
    r"politically\s+homeless",
    r"unaffiliated",
    r"non-?partisan",
    r"purple\s+(?:state|voter)",
    r"open[-\s]minded\s+voter",
    r"(?:not\s+a\s+fan\s+of|tired\s+of|done\s+with|fed\s+up\s+with)\s+(?:either|both)\s+part(?:y|ies)",
    r"still\s+(?:figuring|deciding|making\s+up)",
    r"voted\s+(?:for\s+)?both\s+ways",
]
_RIGHT = [
    r"#?maga",
    r"ultra\s*maga",
    r"#?kag",
    r"conservative",
    r"america\s+first",
    r"2a",
    r"2nd\s+amendment",
    r"second\s+amendment",
    r"pro-?life",
    r"#?trump\s*20(?:16|20|24)",
    r"republican",
    r"gop",
    r"deplorable",
    r"let'?s\s+go\s+brandon",
    r"build\s+the\s+wall",
    r"patriot",
    r"god,?\s+family,?\s+(?:and\s+)?country",
]
_LEFT = [
    r"progressive",
    r"#?resist",
    r"#?resister",
    r"#resistance",
    r"democrat",
    r"dem",
    r"blue\s+wave",
    r"vote\s+blue",
    r"#?blm",
    r"black\s+lives\s+matter",
    r"pro-?choice",
    r"#?harris[-\s/&]*(?:20(?:24)?|walz)",
    r"reproductive\s+(?:rights|freedom)",
    r"democracy\s+matters",
    r"#?khive",
    r"liberal",
    r"leftist",
    r"democratic\s+socialist",
    r"#?fbr",
]
_NOT_A_VOTER = [
    r"news",
    r"breaking",
    r"journalist",
    r"reporter",
    r"correspondent",
    r"newsroom",
    r"official\s+account",
    r"follow\s*back",
    r"f4f",
    r"crypto",
    r"nft",
    r"giveaway",
    r"dm\s+for",
    r"promo(?:tion)?s?",
    r"onlyfans",
    r"forex",
    r"make\s+money",
    r"bot",
    r"(?:editor|producer|anchor)\s+(?:at|for|@\w+)",
    r"(?:signal|dms?\s+open)\s+for\s+tips",
    r"dm\s+me",
    r"airdrops?",
    r"\d+x\s+gains",
    r"link\s+(?:below|in\s+bio)",
    r"financial\s+freedom",
]
_EMOJI_LEFT = ["\N{WATER WAVE}"]  # the "blue wave" emoji


def _compile(patterns: list[str]) -> re.Pattern[str]:
    return re.compile(r"(?<![\w#])(?:" + "|".join(patterns) + r")(?!\w)", re.IGNORECASE)


_RE = {
    "cross": _compile(_CROSS_PRESSURED),
    MODERATE: _compile(_MODERATE),
    LEAN_RIGHT: _compile(_RIGHT),
    LEAN_LEFT: _compile(_LEFT),
    "not_a_voter": _compile(_NOT_A_VOTER),
}


def _find(kind: str, text: str) -> list[str]:
    return [m.group(0).strip() for m in _RE[kind].finditer(text)]


def cohort_from_bio(bio: str) -> tuple[str, list[str]]:
    """Cohort from a self-description, with the phrases that decided it.

    >>> cohort_from_bio("Independent. Swing voter in PA")
    ('moderate', ['Independent', 'Swing voter'])
    """
    text = (bio or "").strip()
    if not text:
        return UNPLACED, []
    not_voter = _find("not_a_voter", text)
    if not_voter:
        return UNKNOWN, not_voter
    cross = _find("cross", text)
    rest = _RE["cross"].sub(" ", text)
    moderate = cross + _find(MODERATE, rest)
    right = _find(LEAN_RIGHT, rest)
    left = _find(LEAN_LEFT, rest) + [e for e in _EMOJI_LEFT if e in rest]
    if right and left:  # cross-pressured ("pro-life Democrat"): the swing audience
        return MODERATE, moderate + right + left
    partisan, side = (right, LEAN_RIGHT) if right else (left, LEAN_LEFT)
    if moderate and len(moderate) >= len(partisan):
        return MODERATE, moderate + partisan
    if partisan:
        return side, partisan + moderate
    return UNPLACED, []


# Which side favouring a target counts for; targets not listed (e.g. Elon Musk) are ignored.
DEFAULT_TARGET_SIDES: dict[str, str] = {
    "Donald Trump": LEAN_RIGHT,
    "Kamala Harris": LEAN_LEFT,
    "Joe Biden": LEAN_LEFT,
    "Bernie Sanders": LEAN_LEFT,
    "Hillary Clinton": LEAN_LEFT,
}
_OPPOSITE = {LEAN_LEFT: LEAN_RIGHT, LEAN_RIGHT: LEAN_LEFT}


def stance_call(call: Any, min_confidence: float = MIN_CONFIDENCE) -> str | None:
    """The call that counts: "favor"/"against" when the model is confident, else None.

    The one rule for what counts as a stance call: the history counts these, and the
    confusion matrix the posterior uses (:mod:`models.cohort_confusion`) is measured with it.
    """
    if isinstance(call, Mapping):
        label = str(call.get("label", "none"))
        score = float(call.get("scores", {}).get(label, 1.0))
    else:
        label, score = str(call), 1.0
    if label not in ("favor", "against") or score < min_confidence:
        return None
    return label


@dataclass
class CohortHistory:
    """Running stance evidence of one author: counts only, so it stays small forever."""

    posts: int = 0
    stance_posts: int = 0  # posts with at least one confident favor/against call
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # target -> label -> n

    def add(self, stance: Mapping[str, Any], min_confidence: float = MIN_CONFIDENCE) -> None:
        """Record one post's stance: ``{target: label}`` or ``{target: {"label", "scores"}}``."""
        self.posts += 1
        counted = False
        for target, call in stance.items():
            label = stance_call(call, min_confidence)
            if label is None:
                continue
            per = self.counts.setdefault(target, {"favor": 0, "against": 0})
            per[label] = per.get(label, 0) + 1
            counted = True
        self.stance_posts += int(counted)

    def points(self, sides: Mapping[str, str] = DEFAULT_TARGET_SIDES) -> dict[str, int]:
        """Favor of a side's candidate or against the other side's, per side."""
        pts = {LEAN_LEFT: 0, LEAN_RIGHT: 0}
        for target, per in self.counts.items():
            side = sides.get(target)
            if side is None:
                continue
            pts[side] += per.get("favor", 0)
            pts[_OPPOSITE[side]] += per.get("against", 0)
        return pts

    def to_dict(self) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "stance_posts": self.stance_posts,
            "counts": {t: dict(c) for t, c in self.counts.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> CohortHistory:
        data = data or {}
        return cls(
            posts=int(data.get("posts", 0)),
            stance_posts=int(data.get("stance_posts", 0)),
            counts={
                t: {k: int(v) for k, v in c.items()} for t, c in data.get("counts", {}).items()
            },
        )


# The posterior's assumptions, in one place (models/COHORTS.md says them in words).
PRIOR: dict[str, float] = {LEAN_LEFT: 0.4, LEAN_RIGHT: 0.4, MODERATE: 0.2}
CONSISTENCY = 0.95  # share of a person's stance posts on a candidate that follow their lean
STANCE_SHARE = 0.5  # share of the posts scored on a target that take a stance on it
CONFIDENT = 0.8  # posterior probability needed to call a side or cross-pressured


@dataclass(frozen=True)
class Confusion:
    """P(model's call | true stance) per target, from the measured counts (+1 smoothing)."""

    rates: dict[str, dict[str, dict[str, float]]]  # target -> truth -> call -> probability
    pooled: dict[str, dict[str, float]]  # for targets that were not measured
    version: str  # the model version the counts were measured with

    @classmethod
    def from_counts(cls, data: Mapping[str, Any]) -> Confusion:
        def norm(per: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, float]]:
            out = {}
            for truth, row in per.items():
                total = sum(row.values()) + len(row)
                out[truth] = {call: (n + 1) / total for call, n in row.items()}
            return out

        return cls(
            rates={t: norm(per) for t, per in data["targets"].items()},
            pooled=norm(data["pooled"]),
            version=str(data.get("model_version", "?")),
        )

    def favor_share(self, target: str, favors: bool) -> float:
        """P(a call on ``target`` is favor | the author favors / opposes it, a call was made).

        A call comes from a post that takes a stance on the target (``STANCE_SHARE``;
        the author follows their lean ``CONSISTENCY`` of the time) or from one that does
        not (the model's false calls on no-stance tweets).
        """
        c = self.rates.get(target, self.pooled)
        lean = CONSISTENCY if favors else 1.0 - CONSISTENCY

        def p(call: str) -> float:
            stance = lean * c["favor"][call] + (1.0 - lean) * c["against"][call]
            return STANCE_SHARE * stance + (1.0 - STANCE_SHARE) * c["none"][call]

        return p("favor") / (p("favor") + p("against"))


@lru_cache(maxsize=4)
def load_confusion(directory: Path = PACKAGED_DIR) -> Confusion:
    """The matrix measured by ``python -m models.cohort_confusion`` for the shipped model."""
    return Confusion.from_counts(read_confusion(directory))


def posterior(
    history: CohortHistory,
    *,
    sides: Mapping[str, str] = DEFAULT_TARGET_SIDES,
    confusion: Confusion | None = None,
    prior: Mapping[str, float] = PRIOR,
) -> dict[str, float]:
    """P(author type | the model's calls): lean_left, lean_right or moderate (cross-pressured).

    A partisan favors their side's candidates and opposes the other side's. A
    cross-pressured author leans on each candidate too, but not all in one direction (e.g.
    for Trump and for Sanders): every non-aligned combination of leans over the candidates
    they have posted about is equally likely. Each call is read through the confusion
    matrix, so a mixed record that the model's errors explain is not evidence of a mixed
    person; one candidate alone can never show cross-pressure.
    """
    confusion = confusion or load_confusion()
    lean_right = lean_left = total = 0.0
    observed = 0
    for target, per in history.counts.items():
        side = sides.get(target)
        nf, na = per.get("favor", 0), per.get("against", 0)
        if side is None or nf + na == 0:
            continue
        observed += 1
        pro, anti = (confusion.favor_share(target, f) for f in (True, False))
        log_pro = nf * math.log(pro) + na * math.log1p(-pro)
        log_anti = nf * math.log(anti) + na * math.log1p(-anti)
        lean_right += log_pro if side == LEAN_RIGHT else log_anti
        lean_left += log_anti if side == LEAN_RIGHT else log_pro
        total += max(log_pro, log_anti) + math.log1p(math.exp(-abs(log_pro - log_anti)))
    log_lik = {LEAN_LEFT: lean_left, LEAN_RIGHT: lean_right, MODERATE: -math.inf}
    if observed >= 2:  # all combinations minus the two aligned ones, each equally likely
        rest = 1.0 - math.exp(lean_right - total) - math.exp(lean_left - total)
        log_lik[MODERATE] = total + math.log(max(rest, 1e-300)) - math.log(2**observed - 2)
    log_post = {k: math.log(prior[k]) + v for k, v in log_lik.items()}
    top = max(log_post.values())
    weights = {k: math.exp(v - top) for k, v in log_post.items()}
    norm = sum(weights.values())
    return {k: w / norm for k, w in weights.items()}


def how_cohorts_are_assigned() -> str:
    """The short plain-words note (markdown) the dashboard shows one click away."""
    return NOTE_PATH.read_text(encoding="utf-8")


def _percent(post: Mapping[str, float]) -> str:
    return (
        f"cross-pressured {post[MODERATE]:.0%}, left {post[LEAN_LEFT]:.0%}, "
        f"right {post[LEAN_RIGHT]:.0%}"
    )


_OTHER_SIDE = {LEAN_LEFT: LEAN_RIGHT, LEAN_RIGHT: LEAN_LEFT}


def decide(
    bio_call: tuple[str, list[str]] | Any,
    history: CohortHistory | Mapping[str, Any] | None,
    min_posts: int = 3,
    *,
    sides: Mapping[str, str] = DEFAULT_TARGET_SIDES,
    confusion: Confusion | None = None,
    confident: float = CONFIDENT,
) -> tuple[str, list[str]]:
    """Combine the bio call with the stance history; returns (label, evidence).

    - media/spam bios stay ``unknown``; a self-description (moderate or partisan) wins;
    - a bio that says nothing political: with ``min_posts`` stance posts, the
      :func:`posterior` names the cohort when it is at least ``confident``
      (``moderate`` = cross-pressured); otherwise, and before that, ``unplaced``.
    """
    if isinstance(bio_call, tuple):
        label, evidence = bio_call[0], list(bio_call[1])
    else:  # a CohortCall-like object
        label, evidence = str(bio_call.label), list(bio_call.evidence)
    if history is None:
        history = CohortHistory()
    elif not isinstance(history, CohortHistory):
        history = CohortHistory.from_dict(history)
    evidence = [f"bio: {e}" for e in evidence]
    pts = history.points(sides)
    summary = (
        f"history: {history.stance_posts}/{history.posts} posts with stance, "
        f"left {pts[LEAN_LEFT]} vs right {pts[LEAN_RIGHT]}"
    )
    if label == UNKNOWN and evidence:  # media or spam: not a voter
        return UNKNOWN, evidence
    if label in (MODERATE, LEAN_LEFT, LEAN_RIGHT):  # the author said so
        return label, evidence + ([summary] if history.posts else [])
    if history.stance_posts < min_posts:
        return UNPLACED, [summary] if history.posts else []
    post = posterior(history, sides=sides, confusion=confusion)
    best = max(post, key=post.__getitem__)
    reading = f"posterior with the model's measured error rates: {_percent(post)}"
    if best in (LEAN_LEFT, LEAN_RIGHT) and pts[best] <= pts[_OTHER_SIDE[best]]:
        # The posterior compares only the partisan types it knows; with an even split of
        # calls both fit badly and the model's asymmetric error rates alone would pick a
        # side. An even record is no evidence of a side.
        return UNPLACED, [summary, reading, "no majority of stance points for either side"]
    if post[best] >= confident:
        return best, [summary, reading]
    return UNPLACED, [summary, reading, f"no cohort reaches {confident:.0%}"]
