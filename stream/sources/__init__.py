"""Sources: everything that puts posts on the ``posts`` topic (simulator, file ingest).

Every source yields :class:`SourceRecord` objects, so one sending layer
(:mod:`stream.sources.producer`) and one dry-run writer serve them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stream.schema import Post

RecordKind = Literal["original", "repost", "duplicate", "malformed"]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One Kafka value to send, with the pause (wall-clock seconds) since the previous one.

    A record carries either a valid ``post`` or ``raw`` bytes that are deliberately (simulator)
    or unavoidably (a bad file row) not a valid post; raw records still go to Kafka so the
    worker dead-letters them with a reason instead of them vanishing at the source.
    """

    delay_s: float
    kind: RecordKind
    post: Post | None = None
    raw: bytes | None = None
    reason: str | None = None  # why ``raw`` is malformed (for counts and logs, not the DLQ)
    key_hint: str | None = None  # key for raw records, when their author is known

    @property
    def malformed(self) -> bool:
        return self.post is None

    @property
    def key(self) -> bytes | None:
        """Keyed by author, so one author's posts (and stance history) share a partition."""
        if self.post is not None:
            return self.post.author.id.encode()
        return self.key_hint.encode() if self.key_hint else None

    @property
    def value(self) -> bytes:
        if self.post is not None:
            return self.post.to_bytes()
        assert self.raw is not None
        return self.raw


__all__ = ["RecordKind", "SourceRecord"]
