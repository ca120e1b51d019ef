"""The one DuckDB writer: ``scores`` + ``annotations`` topics -> DuckDB, exactly once.

DuckDB allows one writing process, so everything that lands in the database goes through
here. Kafka offsets are stored in the database (``kafka_offsets``) in the same transaction
as the rows they produced; on start the sink assigns the partitions itself and seeks to
those offsets, so Kafka's own committed offsets play no part and a crash at any moment
neither loses nor doubles a post. While it runs, the sink also serves read-only SQL over
Arrow Flight (``stream/query.py``) because no other process may open the file meanwhile.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, overload

import duckdb
from pydantic import ValidationError

from stream import events
from stream.config import Settings
from stream.privacy import pseudonymizer
from stream.query import lock_down, serve_in_thread
from stream.schema import Annotation, ScoredPost, reason_kind
from stream.store import (
    ANNOTATIONS_SCHEMA,
    DEAD_LETTERS_SCHEMA,
    MOMENTS_SCHEMA,
    OFFSETS_SCHEMA,
    REJECTS_SCHEMA,
    SCORED_SCHEMA,
    STANCES_SCHEMA,
    Batch,
    BatchResult,
    Store,
    arrow_table,
)

log = logging.getLogger(__name__)

PARTITION_REFRESH_S = 30.0


@dataclass(frozen=True)
class RawRecord:
    """The part of a Kafka record the sink needs (so tests can feed it without a broker)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None


def _minute(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


@overload
def _utc(ts: datetime) -> datetime: ...
@overload
def _utc(ts: None) -> None: ...
def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item["loc"]) or "record"
            parts.append(f"{where}: {item['msg']}")
        return "; ".join(parts)[:2000]
    return f"{type(exc).__name__}: {exc}"[:2000]


def scored_rows(scored: ScoredPost, seq: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One wide row for ``posts``/``scores``/``authors``/``runs`` and the stance rows."""
    post = scored.post
    event_time = _utc(post.event_time)
    minute = _minute(event_time)
    sent = scored.sentiment.scores
    p_neg = float(sent.get("negative", 0.0))
    p_pos = float(sent.get("positive", 0.0))
    cohort = scored.cohort.label or "unknown"
    row = {
        "seq": seq,
        "run_id": post.run_id,
        "post_id": post.id,
        "event_id": post.event_id,
        "event_time": event_time,
        "minute": minute,
        "author_id": post.author.id,
        "handle": post.author.handle,
        "bio": post.author.bio,
        "followers": post.author.followers,
        "text": post.text,
        "lang": post.lang,
        "repost_of": post.repost_of,
        "reply_to": post.reply_to,
        "source": post.source,
        "raw": post.model_dump_json(exclude_none=True),
        "truth": json.dumps(post.truth) if post.truth is not None else None,
        "received_at": _utc(scored.received_at),
        "cohort": cohort,
        "cohort_evidence": list(scored.cohort.evidence),
        "sentiment": scored.sentiment.label,
        "p_negative": p_neg,
        "p_neutral": float(sent.get("neutral", 0.0)),
        "p_positive": p_pos,
        "net_sentiment": p_pos - p_neg,
        "emotion": scored.emotion.label if scored.emotion else None,
        "topic": scored.topic.label if scored.topic else None,
        "model_version": scored.model_version,
        "scored_at": _utc(scored.scored_at),
    }
    stances = []
    for target, call in scored.stance.items():
        p_favor = float(call.scores.get("favor", 0.0))
        p_against = float(call.scores.get("against", 0.0))
        stances.append(
            {
                "run_id": post.run_id,
                "post_id": post.id,
                "target": target,
                "minute": minute,
                "cohort": cohort,
                "label": call.label,
                "p_favor": p_favor,
                "p_against": p_against,
                "p_none": float(call.scores.get("none", 0.0)),
                "net_stance": p_favor - p_against,
            }
        )
    return row, stances


def dead_letter_row(record: RawRecord) -> dict[str, Any]:
    """A ``posts.dlq`` record as a ``dead_letters`` row (headers as the worker wrote them)."""
    headers = {name: value.decode("utf-8", "replace") for name, value in record.headers}
    raw = record.value or b""
    reason = headers.get("reason") or "no reason given"

    def number(name: str) -> int | None:
        text = headers.get(name, "")
        return int(text) if text.lstrip("-").isdigit() and len(text) < 19 else None

    return {
        "dlq_partition": record.partition,
        "dlq_offset": record.offset,
        "reason": reason,
        "reason_kind": reason_kind(reason),
        "source_topic": headers.get("source_topic"),
        "source_partition": number("source_partition"),
        "source_offset": number("source_offset"),
        "truncated": headers.get("truncated") == "true",
        "original_size": number("original_size") or len(raw),
        "original_sha256": headers.get("original_sha256"),
        "key": record.key,
        "raw": raw,
        "dead_at": (
            datetime.fromtimestamp(record.timestamp_ms / 1000, UTC) if record.timestamp_ms else None
        ),
    }


def moment_rows(event_id: str, events_dir: Path | None = None) -> list[dict[str, Any]]:
    """The moments of an event file, or none if there is no such file."""
    try:
        event = events.load_event(event_id, events_dir)
    except FileNotFoundError:
        return []
    except Exception as exc:  # noqa: BLE001 - a broken event file must not stop the sink
        log.warning("event file for %s unreadable, moments not stored: %s", event_id, exc)
        return []
    rows = []
    for moment in event.moments:
        start = _utc(event.start)
        rows.append(
            {
                "event_id": event.id,
                "moment_id": moment.id,
                "at_time": start + timedelta(minutes=moment.at_min),
                "until_time": (
                    start + timedelta(minutes=moment.until_min)
                    if moment.until_min is not None
                    else None
                ),
                "title": moment.title,
                "topic": moment.topic,
                "description": moment.description,
            }
        )
    return rows


class BatchBuilder:
    """Decodes raw Kafka records into a :class:`Batch`; never raises on a bad record."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pseudonymizer = pseudonymizer(settings)
        self.seen_events: set[str] = set()
        self._pending_events: set[str] = set()

    def stored(self) -> None:
        """The last built batch was committed: its events' moments are in the database."""
        self.seen_events |= self._pending_events
        self._pending_events = set()

    def build(self, records: Sequence[RawRecord], lag: int | None = None) -> Batch:
        started = time.perf_counter()
        scored: dict[tuple[str, str], dict[str, Any]] = {}
        stances: list[dict[str, Any]] = []
        annotations: dict[str, dict[str, Any]] = {}
        rejects: list[dict[str, Any]] = []
        dead_letters: list[dict[str, Any]] = []
        offsets: dict[tuple[str, int], int] = {}
        new_events: set[str] = set()
        in_batch_duplicates = 0
        for seq, record in enumerate(records):
            key = (record.topic, record.partition)
            offsets[key] = max(offsets.get(key, 0), record.offset + 1)
            try:
                if record.value is None:
                    raise ValueError("empty record value (tombstone)")
                if record.topic == self.settings.topic.scores:
                    item = ScoredPost.model_validate_json(record.value)
                    if self.pseudonymizer is not None:
                        item = self.pseudonymizer.scored(item)
                    row, stance_rows = scored_rows(item, seq)
                    post_key = (row["run_id"], row["post_id"])
                    if post_key in scored:  # same post twice in one batch: keep the first
                        in_batch_duplicates += 1
                        continue
                    scored[post_key] = row
                    stances.extend(stance_rows)
                    if row["event_id"] not in self.seen_events:
                        new_events.add(row["event_id"])
                elif record.topic == self.settings.topic.annotations:
                    note = Annotation.model_validate_json(record.value)
                    annotations.setdefault(
                        note.id,
                        {
                            "annotation_id": note.id,
                            "event_id": note.event_id,
                            "run_id": note.run_id,
                            "at_time": _utc(note.at),
                            "text": note.text,
                            "author": note.author,
                            "created_at": _utc(note.created_at),
                        },
                    )
                elif record.topic == self.settings.topic.dlq:
                    dead_letters.append(dead_letter_row(record))
                else:
                    raise ValueError(f"unexpected topic {record.topic!r}")
            except (ValidationError, ValueError, TypeError, OverflowError) as exc:
                reason = _describe(exc)
                log.warning(
                    "rejected %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason
                )
                rejects.append(
                    {
                        "topic": record.topic,
                        "partition": record.partition,
                        "kafka_offset": record.offset,
                        "reason": reason,
                        "raw": record.value,
                    }
                )
        moments: list[dict[str, Any]] = []
        for event_id in sorted(new_events):
            moments.extend(moment_rows(event_id, self.settings.events_dir))
        self._pending_events = new_events
        # Stances of a post that appeared twice in the batch: keep one row per key.
        unique_stances = {(s["run_id"], s["post_id"], s["target"]): s for s in stances}
        return Batch(
            scored=arrow_table(list(scored.values()), SCORED_SCHEMA),
            stances=arrow_table(list(unique_stances.values()), STANCES_SCHEMA),
            annotations=arrow_table(list(annotations.values()), ANNOTATIONS_SCHEMA),
            rejects=arrow_table(rejects, REJECTS_SCHEMA),
            moments=arrow_table(moments, MOMENTS_SCHEMA),
            offsets=arrow_table(
                [
                    {"topic": t, "partition": p, "next_offset": o}
                    for (t, p), o in sorted(offsets.items())
                ],
                OFFSETS_SCHEMA,
            ),
            dead_letters=arrow_table(dead_letters, DEAD_LETTERS_SCHEMA),
            records=len(records),
            in_batch_duplicates=in_batch_duplicates,
            lag=lag,
            started=started,
        )

    def reject_all(self, records: Sequence[RawRecord], reason: str) -> Batch:
        """A batch that stores only rejects (and the offsets past them)."""
        batch = self.build([])
        rows = [
            {
                "topic": r.topic,
                "partition": r.partition,
                "kafka_offset": r.offset,
                "reason": reason[:2000],
                "raw": r.value,
            }
            for r in records
        ]
        offsets: dict[tuple[str, int], int] = {}
        for r in records:
            offsets[(r.topic, r.partition)] = max(
                offsets.get((r.topic, r.partition), 0), r.offset + 1
            )
        batch.rejects = arrow_table(rows, REJECTS_SCHEMA)
        batch.offsets = arrow_table(
            [{"topic": t, "partition": p, "next_offset": o} for (t, p), o in offsets.items()],
            OFFSETS_SCHEMA,
        )
        batch.records = len(records)
        return batch


class Sink:
    """Micro-batches Kafka records into DuckDB. :meth:`process` is the whole write path."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store(
            settings.db_path, settings.sink.group, lock_wait_s=settings.sink.lock_wait_s
        )
        self.builder = BatchBuilder(settings)
        self.stop_event = threading.Event()
        self.totals = {"batches": 0, "records": 0, "rows_written": 0, "rejects": 0}

    def process(self, records: Sequence[RawRecord], lag: int | None = None) -> BatchResult:
        """Decode, build Arrow tables and store them with their offsets in one transaction.

        If the database refuses a batch (e.g. a value DuckDB cannot store), the records are
        retried one by one and the ones that still fail go to ``sink_rejects``, so one bad
        record can never wedge the sink in a crash loop.
        """
        try:
            result = self.store.write_batch(self.builder.build(records, lag))
            self.builder.stored()
        except duckdb.Error as exc:
            if len(records) > 1:
                log.warning("batch of %d refused (%s); storing one by one", len(records), exc)
                results = [self.process([r], lag) for r in records]
                result = BatchResult(
                    records=sum(r.records for r in results),
                    rows_written=sum(r.rows_written for r in results),
                    duplicates=sum(r.duplicates for r in results),
                    annotations=sum(r.annotations for r in results),
                    rejects=sum(r.rejects for r in results),
                    latency_ms=sum(r.latency_ms for r in results),
                )
                return result
            log.error("record refused by DuckDB, rejected: %s", exc)
            result = self.store.write_batch(
                self.builder.reject_all(records, f"store failed: {exc}")
            )
        self.totals["batches"] += 1
        self.totals["records"] += result.records
        self.totals["rows_written"] += result.rows_written
        self.totals["rejects"] += result.rejects
        return result

    # ------------------------------------------------------------------ Kafka loop

    def _topics(self) -> list[str]:
        return [
            self.settings.topic.scores,
            self.settings.topic.annotations,
            self.settings.topic.dlq,
        ]

    def _partitions(self, consumer: Any) -> list[Any]:
        from kafka import TopicPartition

        found: list[Any] = []
        for topic in self._topics():
            parts = consumer.partitions_for_topic(topic) or set()
            found.extend(TopicPartition(topic, p) for p in sorted(parts))
        return found

    def _assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Assign partitions ourselves and seek to the offsets stored in DuckDB."""
        consumer.assign(partitions)
        stored = self.store.offsets()
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        log.info(
            "sink assigned %d partitions (%d with stored offsets)",
            len(partitions),
            sum(1 for tp in partitions if (tp.topic, tp.partition) in stored),
        )

    @staticmethod
    def _lag(consumer: Any, next_offsets: dict[Any, int]) -> int | None:
        total, known = 0, False
        for tp, nxt in next_offsets.items():
            high = consumer.highwater(tp)
            if high is not None:
                known = True
                total += max(0, high - nxt)
        return total if known else None

    def run(self) -> None:
        """Consume until :attr:`stop_event` is set; the batch in hand is always finished."""
        from stream import kafka

        settings = self.settings
        while not self.stop_event.is_set():
            try:
                kafka.wait_for_broker(settings, timeout_s=10.0)
                break
            except TimeoutError:
                log.warning("no Kafka broker answers at %s yet; retrying", settings.kafka.bootstrap)
        if self.stop_event.is_set():
            return
        try:
            kafka.ensure_topics(settings)
        except Exception as exc:  # noqa: BLE001 - topics may be managed elsewhere
            log.warning("could not ensure topics (%s); waiting for them to exist", exc)
        consumer = kafka.consumer(
            settings,
            group_id=settings.sink.group,
            client_id="swingdial-sink",
            max_poll_records=settings.sink.batch_size,
        )
        try:
            partitions: list[Any] = []
            while not partitions and not self.stop_event.is_set():
                partitions = self._partitions(consumer)
                if not partitions:
                    log.info("waiting for topics %s", ", ".join(self._topics()))
                    self.stop_event.wait(1.0)
            if partitions:
                self._assign(consumer, partitions)
            refreshed = time.monotonic()
            buffer: list[RawRecord] = []
            next_offsets: dict[Any, int] = {}
            first_at = 0.0
            while not self.stop_event.is_set():
                if buffer:
                    wait_s = max(0.0, settings.sink.flush_s - (time.monotonic() - first_at))
                else:
                    wait_s = 0.5
                polled = consumer.poll(
                    timeout_ms=int(min(wait_s, 0.5) * 1000),
                    max_records=settings.sink.batch_size - len(buffer),
                )
                for tp, items in polled.items():
                    for item in items:
                        if not buffer:
                            first_at = time.monotonic()
                        buffer.append(
                            RawRecord(
                                item.topic,
                                item.partition,
                                item.offset,
                                item.value,
                                item.key,
                                tuple(item.headers or ()),
                                item.timestamp,
                            )
                        )
                        next_offsets[tp] = item.offset + 1
                due = buffer and (
                    len(buffer) >= settings.sink.batch_size
                    or time.monotonic() - first_at >= settings.sink.flush_s
                )
                if due:
                    self._flush(buffer, self._lag(consumer, next_offsets))
                    buffer = []
                if time.monotonic() - refreshed > PARTITION_REFRESH_S:
                    refreshed = time.monotonic()
                    current = self._partitions(consumer)
                    if set(current) != set(consumer.assignment()):
                        if buffer:
                            self._flush(buffer, None)
                            buffer = []
                        self._assign(consumer, current)
            if buffer:  # stop requested: finish the batch in hand
                self._flush(buffer, self._lag(consumer, next_offsets))
        finally:
            consumer.close()

    def _flush(self, buffer: list[RawRecord], lag: int | None) -> None:
        result = self.process(buffer, lag)
        log.debug(
            "batch: %d records, %d new posts, %d duplicates, %d rejects, %.1f ms",
            result.records,
            result.rows_written,
            result.duplicates,
            result.rejects,
            result.latency_ms,
        )

    def close(self) -> None:
        self.store.close()


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT ask the loop to stop after the current batch (main thread only)."""

    def _handler(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current batch and stopping", signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _handler)


def run_sink(settings: Settings, serve: bool = True) -> dict[str, int]:
    """Run the writer (and the read-only query server) until SIGTERM/SIGINT."""
    sink = Sink(settings)
    server = None
    try:
        # The writer's database is the read path's too: no file access, locked settings.
        lock_down(sink.store.con, settings)
        if serve:
            server = serve_in_thread(sink.store.con, settings)
            log.info("query server on %s", settings.query.location)
        if threading.current_thread() is threading.main_thread():
            install_signal_handlers(sink.stop_event)
        log.info("sink writing %s (group %s)", settings.db_path, settings.sink.group)
        sink.run()
        return dict(sink.totals)
    finally:
        if server is not None:
            server.shutdown()
        sink.close()
