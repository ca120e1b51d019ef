"""Alerts that explain themselves: a cohort's approval moved fast, or a spike fired.

Detection is pure (frames in, :class:`Alert` out); the page adds drivers and sample posts,
shows a banner, and posts new alerts once each to ``SWINGDIAL_DASHBOARD_ALERT_WEBHOOK`` as JSON.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dashboard.queries import dial

WEBHOOK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class AlertParams:
    points: float = 15.0  # a move of more than this many dial points (0-100) ...
    window_min: int = 5  # ... within this many minutes raises an alert
    min_stance: int = 5  # points with fewer stance-taking posts are not trusted


@dataclass
class Alert:
    """One banner (and one webhook message)."""

    kind: str  # 'approval_rise', 'approval_drop', or a spike kind ('volume', 'sentiment_drop', ...)
    cohort: str
    target: str | None
    minute: pd.Timestamp  # when it was seen (the newest minute involved)
    since: pd.Timestamp  # the minute it is compared with
    before: float
    after: float
    n: int  # posts behind the newest point
    drivers: str = ""
    samples: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Identity for "already sent": the same move seen on the next refresh is not new."""
        return f"{self.kind}|{self.cohort}|{self.target}|{self.minute.isoformat()}"

    def headline(self) -> str:
        at = f"{self.minute:%H:%M}"
        since = f"{self.since:%H:%M}"
        if self.kind.startswith("approval"):
            return (
                f"{self.cohort}: approval of {self.target} {self.before:.0f} -> {self.after:.0f} "
                f"({self.after - self.before:+.0f} points) between {since} and {at} UTC, "
                f"n = {self.n} stance posts"
            )
        return (
            f"{self.cohort}: {self.kind.replace('_', ' ')} spike at {at} UTC "
            f"({self.before:.2f} -> {self.after:.2f}, n = {self.n})"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cohort": self.cohort,
            "target": self.target,
            "minute": self.minute.isoformat(),
            "since": self.since.isoformat(),
            "before": round(float(self.before), 3),
            "after": round(float(self.after), 3),
            "n": int(self.n),
            "headline": self.headline(),
            "drivers": self.drivers,
            "samples": list(self.samples),
        }


def approval_moves(lines: pd.DataFrame, params: AlertParams) -> list[Alert]:
    """Cohort x target series whose newest trusted point is more than ``params.points`` dial
    points from one of the trusted points of the previous ``params.window_min`` minutes.

    ``lines`` are approval lines (minute, cohort, target, n_stance, approval) ending at the
    last complete minute; the biggest move per series is reported, largest first.
    """
    if lines is None or lines.empty:
        return []
    trusted = lines[(lines["n_stance"] >= params.min_stance) & lines["approval"].notna()]
    alerts = []
    for (cohort, target), series in trusted.groupby(["cohort", "target"], sort=True):
        series = series.sort_values("minute")
        last = series.iloc[-1]
        since = last["minute"] - pd.Timedelta(minutes=params.window_min)
        earlier = series[(series["minute"] >= since) & (series["minute"] < last["minute"])]
        if earlier.empty:
            continue
        moves = dial(last["approval"]) - dial(earlier["approval"])
        i = moves.abs().to_numpy().argmax()
        if abs(moves.iloc[i]) <= params.points:
            continue
        ref = earlier.iloc[i]
        alerts.append(
            Alert(
                kind="approval_rise" if moves.iloc[i] > 0 else "approval_drop",
                cohort=str(cohort),
                target=str(target),
                minute=pd.Timestamp(last["minute"]),
                since=pd.Timestamp(ref["minute"]),
                before=float(dial(ref["approval"])),
                after=float(dial(last["approval"])),
                n=int(last["n_stance"]),
            )
        )
    return sorted(alerts, key=lambda a: -abs(a.after - a.before))


def spike_alerts(spikes: pd.DataFrame, newest: pd.Timestamp, window_min: int) -> list[Alert]:
    """Spike episodes (``dashboard.spikes.detect`` rows) still running within the last
    ``window_min`` minutes before ``newest``."""
    if spikes is None or spikes.empty:
        return []
    recent = spikes[spikes["until"] >= newest - pd.Timedelta(minutes=window_min)]
    return [
        Alert(
            kind=str(s.kind),
            cohort=str(s.cohort),
            target=None,
            minute=pd.Timestamp(s.peak_minute),
            since=pd.Timestamp(s.minute),
            before=float(s.baseline),
            after=float(s.value),
            n=int(s.n),
            drivers=str(getattr(s, "drivers", "") or ""),
            samples=[p for p in str(getattr(s, "sample_posts", "") or "").split(" / ") if p],
        )
        for s in recent.itertuples()
    ]


def post_webhook(url: str, run_id: str, alerts: list[Alert]) -> int:
    """POST ``{"source", "run_id", "alerts": [...]}`` as JSON; returns the HTTP status."""
    body = json.dumps(
        {"source": "swingdial", "run_id": run_id, "alerts": [a.as_json() for a in alerts]}
    ).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as answer:  # noqa: S310 - the analyst's own URL
        return answer.status
