"""Which audience an author belongs to: moderate, lean_left, lean_right or unknown.

Two signals, both explainable (every call carries the evidence that produced it):

1. :func:`cohort_from_bio` — phrases in the self-description ("swing voter", "MAGA",
   "vote blue", ...). Media outlets and spam accounts are ``unknown`` whatever they say,
   because they are not voters.
2. :class:`CohortHistory` — a running count of an author's stance calls (favor/against per
   target), small and JSON-serialisable so the worker can keep one per author in a table.

:func:`decide` combines them: the bio wins when it is explicit; the history fills in for
authors with an empty or neutral bio once they have posted enough.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MODERATE, LEAN_LEFT, LEAN_RIGHT, UNKNOWN = "moderate", "lean_left", "lean_right", "unknown"

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
        return UNKNOWN, []
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
    return UNKNOWN, []


# Which side favouring a target counts for; targets not listed (e.g. Elon Musk) are ignored.
DEFAULT_TARGET_SIDES: dict[str, str] = {
    "Donald Trump": LEAN_RIGHT,
    "Kamala Harris": LEAN_LEFT,
    "Joe Biden": LEAN_LEFT,
    "Bernie Sanders": LEAN_LEFT,
    "Hillary Clinton": LEAN_LEFT,
}
_OPPOSITE = {LEAN_LEFT: LEAN_RIGHT, LEAN_RIGHT: LEAN_LEFT}


@dataclass
class CohortHistory:
    """Running stance evidence of one author: counts only, so it stays small forever."""

    posts: int = 0
    stance_posts: int = 0  # posts with at least one confident favor/against call
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # target -> label -> n

    def add(self, stance: Mapping[str, Any], min_confidence: float = 0.5) -> None:
        """Record one post's stance: ``{target: label}`` or ``{target: {"label", "scores"}}``."""
        self.posts += 1
        counted = False
        for target, call in stance.items():
            if isinstance(call, Mapping):
                label = str(call.get("label", "none"))
                score = float(call.get("scores", {}).get(label, 1.0))
            else:
                label, score = str(call), 1.0
            if label not in ("favor", "against") or score < min_confidence:
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


def decide(
    bio_call: tuple[str, list[str]] | Any,
    history: CohortHistory | Mapping[str, Any] | None,
    min_posts: int = 3,
    *,
    sides: Mapping[str, str] = DEFAULT_TARGET_SIDES,
    lean_share: float = 0.75,
    override_share: float = 0.9,
) -> tuple[str, list[str]]:
    """Combine the bio call with the stance history; returns (label, evidence).

    - media/spam bios stay ``unknown``; partisan bios keep their label;
    - a self-described moderate only moves to a lean when the history is overwhelming
      (``override_share`` of partisan points over at least ``2 * min_posts`` posts);
    - no/neutral bio: with ``min_posts`` stance posts, a ``lean_share`` majority gives a lean,
      a mixed record gives ``moderate``.
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
    total = pts[LEAN_LEFT] + pts[LEAN_RIGHT]
    summary = (
        f"history: {history.stance_posts}/{history.posts} posts with stance, "
        f"left {pts[LEAN_LEFT]} vs right {pts[LEAN_RIGHT]}"
    )
    if label == UNKNOWN and evidence:  # media or spam: not a voter
        return UNKNOWN, evidence
    if history.stance_posts < min_posts or total == 0:
        return label, evidence + ([summary] if history.posts else [])
    top = LEAN_LEFT if pts[LEAN_LEFT] >= pts[LEAN_RIGHT] else LEAN_RIGHT
    share = pts[top] / total
    if label in (LEAN_LEFT, LEAN_RIGHT):
        return label, evidence + [summary]
    if label == MODERATE:
        if share >= override_share and history.stance_posts >= 2 * min_posts:
            return top, evidence + [summary, f"history overrides bio ({share:.0%} {top})"]
        return MODERATE, evidence + [summary]
    if share >= lean_share:
        return top, evidence + [summary, f"{share:.0%} of stance points {top}"]
    return MODERATE, evidence + [summary, f"mixed record ({share:.0%} {top})"]
