"""Event files (``stream/events/<id>.yaml``): when an event started, its moments and topics.

The simulator draws its script from them, the sink stores the moments for the charts, and
the topic model scores against the topic list.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

EVENTS_DIR = Path(__file__).parent / "events"

# An event id names a file in an events folder; it is never a path (no "/", no leading dot),
# because it arrives in every post from producers the worker does not trust.
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_EVENT_ID = re.compile(EVENT_ID_PATTERN)


class UnknownEventError(FileNotFoundError):
    """No event file for this id in the events folders (or the id is not an identifier)."""


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


def is_event_id(text: str) -> bool:
    return bool(_EVENT_ID.match(text))


def event_dirs(extra_dir: Path | None = None) -> list[Path]:
    """Where event files are looked up: the configured folder first, then the package's."""
    return [d for d in (extra_dir, EVENTS_DIR) if d is not None]


def event_path(event_id: str, extra_dir: Path | None = None) -> Path:
    """The file for ``event_id``; raises :class:`UnknownEventError` if there is none."""
    if not is_event_id(event_id):
        raise UnknownEventError(
            f"{event_id[:80]!r} is not an event id (letters, digits, '.', '_', '-'; no paths)"
        )
    for directory in event_dirs(extra_dir):
        path = directory / f"{event_id}.yaml"
        if path.is_file():
            return path
    known = ", ".join(available_events(extra_dir)) or "none"
    raise UnknownEventError(f"no event file for {event_id!r} (known events: {known})")


def available_events(extra_dir: Path | None = None) -> list[str]:
    found = {p.stem for d in event_dirs(extra_dir) if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(e for e in found if is_event_id(e))


def load_event_file(path: Path) -> Event:
    """Load an event from an explicit file an operator named (CLI only, never from posts)."""
    if not path.is_file():
        raise FileNotFoundError(f"no event file {path}")
    return Event.model_validate(yaml.safe_load(path.read_text()))


def load_event(event_id: str, extra_dir: Path | None = None) -> Event:
    """Load an event by id from ``extra_dir`` (``SWINGDIAL_EVENTS_DIR``) or ``stream/events``."""
    return load_event_file(event_path(event_id, extra_dir))
