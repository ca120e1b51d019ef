"""Event files (``stream/events/<id>.yaml``): when an event started, its moments and topics.

The simulator draws its script from them, the sink stores the moments for the charts, and
the topic model scores against the topic list.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

EVENTS_DIR = Path(__file__).parent / "events"


class Topic(BaseModel):
    id: str
    label: str
    description: str
    keywords: list[str] = Field(default_factory=list)


class Moment(BaseModel):
    id: str
    at_min: float = Field(ge=0, description="Minutes after the event's start.")
    until_min: float | None = None
    title: str
    topic: str | None = None
    description: str = ""
    # Who is on air from this moment (a target's name, or e.g. "Harris campaign"); None: the
    # previous speaker carries on. The dashboard's approval dial follows this person.
    speaker: str | None = None
    quote: str = ""  # a short paraphrase of what was said, shown in the moment legend
    # Free-form script for the simulator (cohort reactions, volume, phrases); the sink ignores it.
    script: dict = Field(default_factory=dict)


class Event(BaseModel):
    id: str
    title: str
    start: datetime
    duration_min: float
    targets: list[str]
    topics: list[Topic]
    moments: list[Moment]
    simulation: dict = Field(default_factory=dict)

    def moment_time(self, moment: Moment) -> datetime:
        return self.start + timedelta(minutes=moment.at_min)

    def topic_ids(self) -> list[str]:
        return [topic.id for topic in self.topics]

    def moment_end(self, moment: Moment) -> float:
        """Where a moment stops: its ``until_min``, else the next moment's start, else forever.

        Moments without an end run until the next one starts, so a script stays in force
        through the quiet stretch after it.
        """
        if moment.until_min is not None:
            return moment.until_min
        later = [m.at_min for m in self.moments if m.at_min > moment.at_min]
        return min(later) if later else float("inf")

    def active_moment(self, minute: float) -> Moment | None:
        """The moment in force ``minute`` minutes after the start (the latest one to begin)."""
        active = [m for m in self.moments if m.at_min <= minute < self.moment_end(m)]
        return max(active, key=lambda m: m.at_min) if active else None


def event_path(event_id: str) -> Path:
    return EVENTS_DIR / f"{event_id}.yaml"


def available_events() -> list[str]:
    return sorted(p.stem for p in EVENTS_DIR.glob("*.yaml"))


def load_event(event_id_or_path: str | Path) -> Event:
    """Load an event by id (a file in ``stream/events``) or by path."""
    path = Path(event_id_or_path)
    if not path.suffix:
        path = event_path(str(event_id_or_path))
    if not path.exists():
        known = ", ".join(available_events()) or "none"
        raise FileNotFoundError(f"no event file {path} (known events: {known})")
    return Event.model_validate(yaml.safe_load(path.read_text()))
