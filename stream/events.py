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
