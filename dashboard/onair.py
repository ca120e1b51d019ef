"""Who is on air when: numbered moments with speaker and quote, and the dial's default target.

The ``moments`` table holds when and what; the speaker and a paraphrase of what was said come
from the event file (``stream/events/<id>.yaml``), joined here by moment id. Pure functions
of small frames, so the page and the tests share them.
"""

from __future__ import annotations

import pandas as pd

from stream.events import load_event

MOMENT_COLUMNS = ["id", "at_time", "number", "label", "speaker", "quote", "target"]


def speaker_target(speaker: str | None, targets: list[str]) -> str | None:
    """The stance target a speaker stands for: the exact name, else a target whose surname
    appears in it ("Harris campaign" -> "Kamala Harris"); None when nothing matches."""
    if not speaker:
        return None
    if speaker in targets:
        return speaker
    words = {w.strip(".,'").lower() for w in speaker.split()}
    for target in targets:
        if target.split()[-1].lower() in words:
            return target
    return None


def event_speakers(event_id: str | None) -> dict[str, tuple[str | None, str]]:
    """moment id -> (speaker, quote) from the event file; empty when there is no such file."""
    if not event_id:
        return {}
    try:
        event = load_event(event_id)
    except (FileNotFoundError, ValueError):
        return {}
    return {m.id: (m.speaker, m.quote) for m in event.moments}


def numbered_moments(
    markers: pd.DataFrame, speakers: dict[str, tuple[str | None, str]], targets: list[str]
) -> pd.DataFrame:
    """Moments of ``markers`` in time order, numbered 1..n, with speaker, quote and the target
    on air (a moment without a speaker keeps the previous one's)."""
    if markers is None or markers.empty:
        return pd.DataFrame(columns=MOMENT_COLUMNS)
    moments = markers[markers["kind"] == "moment"].sort_values("at_time").reset_index(drop=True)
    rows, on_air = [], None
    for i, m in enumerate(moments.itertuples()):
        speaker, quote = speakers.get(m.id, (None, ""))
        on_air = speaker_target(speaker, targets) or on_air
        rows.append(
            {
                "id": m.id,
                "at_time": m.at_time,
                "number": i + 1,
                "label": m.label,
                "speaker": speaker or "",
                "quote": quote or "",
                "target": on_air,
            }
        )
    return pd.DataFrame(rows, columns=MOMENT_COLUMNS)


def on_air_targets(minutes: pd.Series, moments: pd.DataFrame, default: str | None) -> pd.Series:
    """The target on air at each minute: the latest moment begun by then (``default`` before
    the first speaker, e.g. while the stream is still failing to load)."""
    known = moments.dropna(subset=["target"]).sort_values("at_time")
    if known.empty:
        return pd.Series(default, index=minutes.index, dtype=object)
    first = known["target"].iloc[0]
    ends = pd.DatetimeIndex(pd.to_datetime(minutes, utc=True)).floor("min") + pd.Timedelta(
        minutes=1
    )  # a moment begun during the minute counts for it
    at = pd.DatetimeIndex(pd.to_datetime(known["at_time"], utc=True)).asi8
    idx = at.searchsorted(ends.asi8, side="left") - 1
    values = [known["target"].iloc[i] if i >= 0 else (default or first) for i in idx]
    return pd.Series(values, index=minutes.index, dtype=object)


def follow_on_air(
    approval: pd.DataFrame, moments: pd.DataFrame, default: str | None
) -> pd.DataFrame:
    """Approval rows of the target on air at each minute (the dial's default view)."""
    if approval.empty:
        return approval
    wanted = on_air_targets(approval["minute"], moments, default)
    return approval[approval["target"] == wanted].reset_index(drop=True)
