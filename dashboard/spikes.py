"""Spike detection: which minutes broke away from their own recent past, and why.

A minute is a spike when its value is far from the *previous* ``baseline_min`` minutes of the
same cohort, measured as a robust z-score (median and MAD, so one earlier spike does not
inflate the baseline). Two kinds per cohort (plus ``all`` for volume):

* ``volume``: posts per minute jumped (an outage, a viral moment);
* ``sentiment_drop`` / ``sentiment_rise``: net sentiment moved.

Both also need an absolute effect (``min_volume_ratio``, ``min_shift``) so a flat, quiet
series never alarms on noise. Consecutive spike minutes merge into one episode reported at
its onset. :func:`drivers` explains an episode: terms, cohorts and topics over-represented
in the spike's posts compared with the baseline's posts, plus sample posts.

Everything here is a pure function of pandas frames; the SQL that feeds it is in
:mod:`dashboard.queries`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MAD_TO_SD = 1.4826  # MAD of a normal distribution x this = its standard deviation


@dataclass(frozen=True)
class SpikeParams:
    """Knobs of the detector (one place; the dashboard passes these through)."""

    baseline_min: int = 15  # previous minutes that form the baseline
    min_baseline_points: int = 5  # fewer usable baseline minutes: no verdict
    threshold: float = 3.5  # robust z needed
    min_posts: int = 5  # sentiment of a point with fewer posts is not trusted
    min_volume_ratio: float = 1.5  # volume must also be this many times the baseline median
    min_shift: float = 0.15  # net sentiment must also move at least this much
    sentiment_floor: float = 0.05  # smallest sentiment scale (a very steady series)
    merge_gap_min: int = 1  # spike minutes this close form one episode


SPIKE_COLUMNS = [
    "minute",
    "peak_minute",
    "until",
    "minutes",
    "cohort",
    "kind",
    "magnitude",
    "value",
    "baseline",
    "n",
]

_STOPWORDS_TEXT = """
    a about after again all also am an and any are as at be because been before being but by
    can could did do does doing don down during each even few for from further get got had has
    have having he her here hers him his how i if in into is it its itself just let like me
    more most much my no nor not now of off on once only or other our out over own really
    same she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who why will
    with would you your yours rt amp via im dont cant its thats
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split()) - {"down"}  # "down" carries outages

_TOKEN = re.compile(r"[#@]?[a-z][a-z0-9']+")


def tokenize(text: str) -> list[str]:
    """Lower-case words and hashtags, without stopwords or 1-2 letter tokens ("it's" = "its")."""
    words = (t.replace("'", "") for t in _TOKEN.findall(text.lower()))
    return [w for w in words if len(w) > 2 and w not in STOPWORDS]


# --------------------------------------------------------------------------- detection


def _robust_z(values: pd.Series, window: int, min_points: int, floor: pd.Series) -> pd.DataFrame:
    """z of each value against the median/MAD of the previous ``window`` values (NaN skipped)."""
    prev = values.shift(1).rolling(window, min_periods=min_points)
    median = prev.median()
    mad = (values.shift(1) - median).abs().rolling(window, min_periods=min_points).median()
    scale = np.maximum(MAD_TO_SD * mad, floor)
    return pd.DataFrame({"baseline": median, "z": (values - median) / scale})


def _complete(lines: pd.DataFrame) -> pd.DataFrame:
    """Every minute x cohort present (missing minutes: 0 posts, unknown sentiment), plus 'all'."""
    if lines.empty:
        return lines
    minutes = pd.date_range(lines["minute"].min(), lines["minute"].max(), freq="min")
    cohorts = sorted(lines["cohort"].unique())
    full = (
        lines.set_index(["minute", "cohort"])[["n", "net_sentiment"]]
        .reindex(pd.MultiIndex.from_product([minutes, cohorts], names=["minute", "cohort"]))
        .reset_index()
    )
    full["n"] = full["n"].fillna(0)
    weighted = full.assign(w=full["net_sentiment"].fillna(0) * full["n"])
    total = weighted.groupby("minute", as_index=False).agg(n=("n", "sum"), w=("w", "sum"))
    total["net_sentiment"] = np.where(total["n"] > 0, total["w"] / total["n"].clip(lower=1), np.nan)
    total["cohort"] = "all"
    return pd.concat([full, total.drop(columns="w")], ignore_index=True)


def _candidates(series: pd.DataFrame, p: SpikeParams) -> list[dict[str, Any]]:
    """Spike minutes of one cohort's complete, minute-ordered series."""
    out: list[dict[str, Any]] = []
    n = series["n"].astype(float)
    vol = _robust_z(n, p.baseline_min, p.min_baseline_points, np.sqrt(n.shift(1).clip(lower=1.0)))
    hit = (vol["z"] >= p.threshold) & (n >= p.min_volume_ratio * vol["baseline"].clip(lower=1.0))
    for i in np.flatnonzero(hit.to_numpy()):
        out.append(
            {
                "i": i,
                "kind": "volume",
                "z": vol["z"].iat[i],
                "value": n.iat[i],
                "baseline": vol["baseline"].iat[i],
            }
        )
    net = series["net_sentiment"].where(n >= p.min_posts)
    sent = _robust_z(
        net, p.baseline_min, p.min_baseline_points, pd.Series(p.sentiment_floor, index=net.index)
    )
    shift = net - sent["baseline"]
    hit = (sent["z"].abs() >= p.threshold) & (shift.abs() >= p.min_shift)
    for i in np.flatnonzero(hit.fillna(False).to_numpy()):
        kind = "sentiment_drop" if shift.iat[i] < 0 else "sentiment_rise"
        out.append(
            {
                "i": i,
                "kind": kind,
                "z": sent["z"].iat[i],
                "value": net.iat[i],
                "baseline": sent["baseline"].iat[i],
            }
        )
    return out


def detect(lines: pd.DataFrame, params: SpikeParams | None = None) -> pd.DataFrame:
    """Spike episodes in ``lines`` (minute, cohort, n, net_sentiment: a cohort-lines frame).

    Returns one row per episode (columns :data:`SPIKE_COLUMNS`), strongest first; an empty
    frame with those columns when nothing stands out.
    """
    p = params or SpikeParams()
    if lines is None or lines.empty:
        return pd.DataFrame(columns=SPIKE_COLUMNS)
    full = _complete(lines[["minute", "cohort", "n", "net_sentiment"]])
    rows: list[dict[str, Any]] = []
    for cohort, series in full.groupby("cohort", sort=True):
        series = series.sort_values("minute").reset_index(drop=True)
        found = _candidates(series, p)
        if cohort == "all":  # 'all' only adds a volume view; sentiment is per cohort
            found = [c for c in found if c["kind"] == "volume"]
        for kind in sorted({c["kind"] for c in found}):
            hits = sorted((c for c in found if c["kind"] == kind), key=lambda c: c["i"])
            episode: list[dict[str, Any]] = []
            for hit in [*hits, None]:
                if hit is not None and (
                    not episode or hit["i"] - episode[-1]["i"] <= p.merge_gap_min + 1
                ):
                    episode.append(hit)
                    continue
                if episode:
                    peak = max(episode, key=lambda c: abs(c["z"]))
                    rows.append(
                        {
                            "minute": series["minute"].iat[episode[0]["i"]],
                            "peak_minute": series["minute"].iat[peak["i"]],
                            "until": series["minute"].iat[episode[-1]["i"]],
                            "minutes": episode[-1]["i"] - episode[0]["i"] + 1,
                            "cohort": cohort,
                            "kind": kind,
                            "magnitude": float(abs(peak["z"])),
                            "value": float(peak["value"]),
                            "baseline": float(peak["baseline"]),
                            "n": int(series["n"].iat[peak["i"]]),
                        }
                    )
                episode = [hit] if hit is not None else []
    if not rows:
        return pd.DataFrame(columns=SPIKE_COLUMNS)
    return (
        pd.DataFrame(rows, columns=SPIKE_COLUMNS)
        .sort_values(["magnitude", "minute"], ascending=[False, True])
        .reset_index(drop=True)
    )


# --------------------------------------------------------------------------- drivers


@dataclass
class Drivers:
    """Why a spike happened, as far as its posts tell."""

    terms: list[tuple[str, float, int]]  # term, lift vs baseline, posts containing it
    cohorts: list[tuple[str, float, float]]  # cohort, share in spike, lift
    topics: list[tuple[str, float, float]]  # topic, share in spike, lift
    samples: list[str]

    def summary(self) -> str:
        """One line for a table cell."""
        terms = ", ".join(t for t, _, _ in self.terms[:5]) or "-"
        topics = ", ".join(f"{t} {s:.0%}" for t, s, _ in self.topics[:2]) or "-"
        return f"terms: {terms} | topics: {topics}"


def _shares(window: pd.Series, baseline: pd.Series, top: int) -> list[tuple[str, float, float]]:
    w = window.dropna().value_counts(normalize=True)
    b = baseline.dropna().value_counts(normalize=True)
    out = [
        (str(k), float(v), float(v / b.get(k, 1.0 / max(len(baseline), 1)))) for k, v in w.items()
    ]
    return sorted(out, key=lambda r: (-r[2] * r[1], r[0]))[:top]


def drivers(
    window: pd.DataFrame,
    baseline: pd.DataFrame,
    *,
    top: int = 8,
    min_count: int = 3,
    samples: int = 3,
    kind: str = "volume",
) -> Drivers:
    """Terms/cohorts/topics over-represented in ``window`` posts versus ``baseline`` posts.

    Both frames need ``text``; ``cohort``, ``topic`` and ``net_sentiment`` are used when
    present. Term lift is document frequency in the window over (add-one smoothed) document
    frequency in the baseline; terms in fewer than ``min_count`` window posts are ignored.
    """
    if window is None or window.empty:
        return Drivers([], [], [], [])
    baseline = baseline if baseline is not None else window.iloc[0:0]
    w_docs = [set(tokenize(t)) for t in window["text"].astype(str)]
    b_docs = [set(tokenize(t)) for t in baseline.get("text", pd.Series(dtype=str)).astype(str)]
    w_df = Counter(t for doc in w_docs for t in doc)
    b_df = Counter(t for doc in b_docs for t in doc)
    nw, nb = max(len(w_docs), 1), max(len(b_docs), 1)
    scored = [
        (term, (count / nw) / ((b_df.get(term, 0) + 1) / (nb + 1)), count)
        for term, count in w_df.items()
        if count >= min_count
    ]
    terms = sorted(scored, key=lambda r: (-r[1], -r[2], r[0]))[:top]
    empty = pd.Series(dtype=object)
    cohorts = _shares(window.get("cohort", empty), baseline.get("cohort", empty), top)
    topics = _shares(window.get("topic", empty), baseline.get("topic", empty), top)
    # Samples: posts carrying the most top terms; for sentiment spikes, the matching tone.
    top_terms = {t for t, _, _ in terms[:5]}
    ranked = window.assign(_hits=[len(doc & top_terms) for doc in w_docs])
    order = ["_hits"]
    ascending = [False]
    if "net_sentiment" in ranked and kind.startswith("sentiment"):
        order.append("net_sentiment")
        ascending.append(kind == "sentiment_drop")
    picked = ranked.sort_values(order, ascending=ascending)["text"].astype(str)
    return Drivers(terms, cohorts, topics, list(dict.fromkeys(picked))[:samples])
