"""The scoring worker's batch logic as one pure function, so it can be tested without Kafka.

``score_batch(records, score, history, ...)`` takes the raw records of one micro-batch and
returns what must be written: a ``scores`` record per valid post, a dead letter per record
that cannot be scored (with the reason), and the author-history values to store. Every
input record ends in exactly one of the two outputs; a failure of one record never costs
another anything. Only a failure of the batch as a whole (the model raises for every post)
raises :class:`BatchFailed`, and the worker then retries and finally exits without
acknowledging the batch (``stream/worker.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models.cohort import CohortHistory, cohort_from_bio, decide
from stream.schema import CohortCall, InvalidPost, LabelScores, Post, ScoredPost, parse_post

# Room kept free below the producer's limit for headers, key and Kafka's record overhead.
RECORD_OVERHEAD_BYTES = 16 * 1024
# A dead letter too large to send whole keeps this much of the original (plus size and hash).
TRUNCATED_COPY_BYTES = 64 * 1024
MAX_KEY_BYTES = 1024
MAX_REASON_CHARS = 2000

ScoreFn = Callable[[list[Post]], list[dict[str, Any]]]


@dataclass(frozen=True)
class InRecord:
    """The part of a ``posts`` record the worker needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None  # seconds since the epoch, as Kafka stamped it


@dataclass(frozen=True)
class OutRecord:
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> str | None:
        return next((v.decode() for k, v in self.headers if k == name), None)


@dataclass
class BatchOutput:
    scores: list[OutRecord] = field(default_factory=list)
    dead_letters: list[OutRecord] = field(default_factory=list)
    # author-history key -> (input partition, value to store)
    history: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)


class BatchFailed(RuntimeError):
    """The batch as a whole could not be scored; nothing of it may be acknowledged."""


def history_key(post: Post) -> str:
    """Author history is kept per run, so a replay starts from a clean history."""
    return json.dumps([post.run_id, post.author.id])


def dead_letter(record: InRecord, reason: str, max_bytes: int) -> OutRecord:
    """The original bytes and why they were refused; a truncated copy if too large to send."""
    value = record.value or b""
    key = record.key
    headers = [
        ("reason", reason[:MAX_REASON_CHARS].encode()),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]
    if key is not None and len(key) > MAX_KEY_BYTES:
        headers.append(("original_key_sha256", hashlib.sha256(key).hexdigest().encode()))
        key = None
    if len(value) > max_bytes - RECORD_OVERHEAD_BYTES:
        headers += [
            ("truncated", b"true"),
            ("original_size", str(len(value)).encode()),
            ("original_sha256", hashlib.sha256(value).hexdigest().encode()),
        ]
        value = value[:TRUNCATED_COPY_BYTES]
    return OutRecord(key=key, value=value, headers=tuple(headers))


def cohort_call(
    post: Post,
    output: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
    partition: int,
    offset: int,
    min_posts: int,
) -> tuple[CohortCall, dict[str, Any] | None]:
    """The author's cohort from their bio and stance history, and the history to store.

    ``stored`` is the author's history plus the input position (partition, offset) of the
    last post counted in it. A post at or before that position is being re-scored after a
    crash (its batch was not acked but its history update was), so it is not counted
    twice; the returned value is then ``None`` (nothing to write).
    """
    history = CohortHistory.from_dict(stored)
    fresh = (
        stored is None
        or int(stored.get("partition", partition)) != partition
        or offset > int(stored.get("offset", -1))
    )
    if fresh:
        history.add(output["stance"])
    label, evidence = decide(cohort_from_bio(post.author.bio), history, min_posts=min_posts)
    value = history.to_dict() | {"partition": partition, "offset": offset} if fresh else None
    return CohortCall(label=label, evidence=evidence), value


def build_scored(
    post: Post,
    output: Mapping[str, Any],
    version: str,
    received_at: datetime | None,
    cohort: CohortCall,
) -> ScoredPost:
    """Assemble the record for the ``scores`` topic from a post and its model output."""
    return ScoredPost(
        post=post,
        sentiment=LabelScores(**output["sentiment"]),
        stance={target: LabelScores(**value) for target, value in output["stance"].items()},
        emotion=LabelScores(**output["emotion"]) if output.get("emotion") else None,
        topic=LabelScores(**output["topic"]) if output.get("topic") else None,
        cohort=cohort,
        model_version=version,
        scored_at=datetime.now(UTC),
        received_at=received_at,
    )


def score_isolating(score: ScoreFn, posts: list[Post]) -> list[dict[str, Any] | Exception]:
    """Score all posts at once; if that raises, post by post, so one bad input is found.

    Raises :class:`BatchFailed` when no post can be scored (the model itself is broken).
    """
    if not posts:
        return []
    try:
        outputs = score(posts)
    except Exception as batch_error:  # noqa: BLE001 - any model failure is isolated below
        if len(posts) == 1:
            raise BatchFailed(f"scoring failed: {batch_error!r}") from batch_error
        results: list[dict[str, Any] | Exception] = []
        for post in posts:
            try:
                results.append(score([post])[0])
            except Exception as exc:  # noqa: BLE001
                results.append(exc)
        if all(isinstance(r, Exception) for r in results):
            raise BatchFailed(f"scoring failed for every post: {batch_error!r}") from batch_error
        return results
    if len(outputs) != len(posts):  # a broken model, not a bad post
        raise BatchFailed(f"scorer returned {len(outputs)} outputs for {len(posts)} posts")
    return list(outputs)


def _received_at(record: InRecord) -> datetime | None:
    if not record.timestamp:
        return None
    try:
        return datetime.fromtimestamp(record.timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def score_batch(
    records: Sequence[InRecord],
    score: ScoreFn,
    history: Mapping[str, Any],
    *,
    version: str,
    min_posts: int,
    max_bytes: int,
) -> BatchOutput:
    """Records in -> scores records, dead letters and history updates out (see module doc)."""
    out = BatchOutput()
    valid: list[tuple[InRecord, Post]] = []
    for record in records:
        try:
            if record.value is None:
                raise InvalidPost("empty record value (tombstone)")
            valid.append((record, parse_post(record.value)))
        except InvalidPost as exc:
            out.dead_letters.append(dead_letter(record, exc.reason, max_bytes))
        except Exception as exc:  # noqa: BLE001 - no record may cost another anything
            reason = f"unreadable record: {type(exc).__name__}: {exc}"
            out.dead_letters.append(dead_letter(record, reason, max_bytes))
    outputs = score_isolating(score, [post for _, post in valid])
    limit = max_bytes - RECORD_OVERHEAD_BYTES
    for (record, post), output in zip(valid, outputs, strict=True):
        if isinstance(output, Exception):
            reason = f"scoring failed for this post: {type(output).__name__}: {output}"
            out.dead_letters.append(dead_letter(record, reason, max_bytes))
            continue
        key = history_key(post)
        stored = out.history[key][1] if key in out.history else history.get(key)
        try:
            cohort, value = cohort_call(
                post, output, stored, record.partition, record.offset, min_posts
            )
            scored = build_scored(post, output, version, _received_at(record), cohort).to_bytes()
        except Exception as exc:  # noqa: BLE001
            reason = f"could not build the scores record: {type(exc).__name__}: {exc}"
            out.dead_letters.append(dead_letter(record, reason, max_bytes))
            continue
        if len(scored) > limit:
            reason = f"scores record too large: {len(scored)} bytes (limit {limit})"
            out.dead_letters.append(dead_letter(record, reason, max_bytes))
            continue
        if value is not None:
            out.history[key] = (record.partition, value)
        out.scores.append(OutRecord(key=post.id.encode(), value=scored))
    return out


def evictions(history: MutableMapping[str, Any], limit: int) -> list[tuple[str, int]]:
    """Drop the least recently seen author histories beyond ``limit``; returns (key,
    partition) of each, for a changelog tombstone. Memory stays bounded over a long event."""
    dropped = []
    while len(history) > limit:
        key = next(iter(history))
        value = history.pop(key)
        dropped.append((key, int((value or {}).get("partition", 0))))
    return dropped


def apply_history(
    history: MutableMapping[str, Any],
    updates: Mapping[str, tuple[int, dict[str, Any]]],
    limit: int,
) -> list[tuple[str, int, dict[str, Any] | None]]:
    """Store a batch's author-history updates in ``history`` (in place) and return the
    changelog writes they need: (key, partition, value), value ``None`` for an eviction.

    Called before the next batch is scored, so that batch reads these updates even while
    this one's changelog writes are still in flight. Re-inserted keys move to the end, so
    the mapping's order stays least recently seen first.
    """
    writes: list[tuple[str, int, dict[str, Any] | None]] = []
    for key, (partition, value) in updates.items():
        history.pop(key, None)
        history[key] = value
        writes.append((key, partition, value))
    writes += [(key, partition, None) for key, partition in evictions(history, limit)]
    return writes
