"""The records that travel through Kafka, and their validation.

A post is checked once, at the scoring worker (:func:`parse_post`). Anything that fails
raises :class:`InvalidPost` with a reason a person can read; the worker sends the original
bytes and that reason to the dead-letter topic and carries on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stream.events import EVENT_ID_PATTERN

EARLIEST = datetime(2006, 3, 21, tzinfo=UTC)  # the first tweet; nothing older is a post
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_TEXT = 10_000
MAX_FOLLOWERS = 1_000_000_000


class Author(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=128)
    handle: str = Field(min_length=1, max_length=64)
    bio: str = Field("", max_length=1000)
    followers: int = Field(0, ge=0, le=MAX_FOLLOWERS)


class Post(BaseModel):
    """One social post as produced by every source (simulator, file ingest, replay)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=128)
    run_id: str = Field(min_length=1, max_length=128)
    event_id: str = Field(pattern=EVENT_ID_PATTERN)
    event_time: datetime
    author: Author
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    lang: str = Field("en", min_length=2, max_length=16)
    repost_of: str | None = None
    reply_to: str | None = None
    source: str = Field("unknown", max_length=256)
    # Ground truth from the simulator, kept for measuring accuracy. The scorer never reads it.
    truth: dict[str, Any] | None = None

    @field_validator("event_time")
    @classmethod
    def _sane_time(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        if not EARLIEST <= value < LATEST:
            raise ValueError(f"event_time {value.isoformat()} is outside {EARLIEST.year}-2099")
        return value

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank")
        return value

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def reason_kind(reason: str) -> str:
    """What a dead letter's reason is about, for counting: the words before the first ':'
    ("not valid JSON", "event_id", "scores record too large", ...)."""
    head = reason.split(":", 1)[0].split(";", 1)[0].strip()
    return head[:80] or "unknown"


class InvalidPost(ValueError):
    """A record that cannot become a :class:`Post`; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "record"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_post(raw: bytes | str) -> Post:
    """Decode and validate one Kafka value. Raises :class:`InvalidPost`."""
    try:
        data = json.loads(raw)
    except ValueError as exc:  # bad JSON, bad UTF-8, an integer of over 4,300 digits
        raise InvalidPost(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidPost("not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidPost(f"expected a JSON object, got {type(data).__name__}")
    try:
        return Post.model_validate(data)
    except ValidationError as exc:
        raise InvalidPost(_describe(exc)) from None
    except RecursionError:
        raise InvalidPost("record nested too deeply") from None


class LabelScores(BaseModel):
    label: str
    scores: dict[str, float]


class CohortCall(BaseModel):
    label: str = "unknown"
    evidence: list[str] = Field(default_factory=list)


class ScoredPost(BaseModel):
    """What the worker produces to the ``scores`` topic: the post plus every model output."""

    post: Post
    sentiment: LabelScores
    stance: dict[str, LabelScores]
    emotion: LabelScores | None = None
    topic: LabelScores | None = None
    cohort: CohortCall = Field(default_factory=CohortCall)
    model_version: str
    scored_at: datetime
    received_at: datetime | None = None

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class Annotation(BaseModel):
    """A note an analyst pins to the timeline; enters through Kafka like any other input."""

    id: str = Field(min_length=1, max_length=128)
    event_id: str | None = None
    run_id: str | None = None
    at: datetime
    text: str = Field(min_length=1, max_length=2000)
    author: str = "analyst"
    created_at: datetime
