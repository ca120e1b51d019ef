"""The one sending layer every source uses: records -> the ``posts`` topic, paced or not.

Kept apart from the generators so that those stay pure (and unit-testable without a
broker), and so a dry run can write exactly the bytes Kafka would have received.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from stream.config import Settings
from stream.sources import SourceRecord


@dataclass
class SendCounts:
    """What a run sent; ``malformed`` records were sent too (the worker dead-letters them)."""

    sent: int = 0
    malformed: int = 0
    failed: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM; what was sent is still flushed

    @property
    def total(self) -> int:
        return self.sent + self.malformed

    def add(self, record: SourceRecord) -> None:
        self.kinds[record.kind] += 1
        if record.malformed:
            self.malformed += 1
        else:
            self.sent += 1


Progress = Callable[[SendCounts], None]


def new_run_id(event_id: str, now: datetime | None = None) -> str:
    """``<event>-<UTC time>-<4 hex>``: sortable by start, unique across parallel runs."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{event_id}-{stamp}-{secrets.token_hex(2)}"


class _Pacer:
    """Sleeps so that record i leaves at the sum of the delays before it.

    Sleeping against a running deadline (not per gap) keeps long runs from drifting when
    sends themselves take time.
    """

    def __init__(self, realtime: bool) -> None:
        self.realtime = realtime
        self.start = time.monotonic()
        self.due = 0.0

    def wait(self, delay_s: float) -> None:
        if not self.realtime:
            return
        self.due += delay_s
        pause = self.start + self.due - time.monotonic()
        if pause > 0:
            time.sleep(pause)


def _run(
    records: Iterable[SourceRecord],
    emit: Callable[[SourceRecord], None],
    realtime: bool,
    progress: Progress | None,
    every_s: float,
) -> SendCounts:
    counts = SendCounts()
    pacer = _Pacer(realtime)
    last_report = time.monotonic()
    try:
        for record in records:
            pacer.wait(record.delay_s)
            emit(record)
            counts.add(record)
            if progress is not None and time.monotonic() - last_report >= every_s:
                last_report = time.monotonic()
                counts.elapsed_s = last_report - pacer.start
                progress(counts)
    except KeyboardInterrupt:
        # A stop request ends the run, not the process: the caller still flushes and reports.
        counts.interrupted = True
    counts.elapsed_s = time.monotonic() - pacer.start
    return counts


def send_records(
    settings: Settings,
    records: Iterable[SourceRecord],
    realtime: bool,
    progress: Progress | None = None,
    every_s: float = 2.0,
) -> SendCounts:
    """Send every record to ``settings.topic.posts`` and flush at the end.

    The key is :attr:`SourceRecord.key` (the author id, so one author's posts stay on one
    partition for the worker's per-author history).

    ``realtime`` sleeps for each record's ``delay_s``. Failed sends are counted, not raised,
    so one broker hiccup does not end a two-hour run; the caller reports ``failed``.
    """
    from stream.kafka import producer as make_producer  # kafka import only when sending

    client = make_producer(settings)
    failures = Counter[str]()

    def on_error(exc: BaseException) -> None:
        failures[type(exc).__name__] += 1

    def emit(record: SourceRecord) -> None:
        client.send(settings.topic.posts, key=record.key, value=record.value).add_errback(on_error)

    try:
        counts = _run(records, emit, realtime, progress, every_s)
        client.flush()
    finally:
        client.close()
    counts.failed = sum(failures.values())
    return counts


def write_records(
    out: IO[bytes],
    records: Iterable[SourceRecord],
    realtime: bool = False,
    progress: Progress | None = None,
    every_s: float = 2.0,
) -> SendCounts:
    """Dry run: write each value Kafka would get as one line (re-sendable with ``ingest``)."""

    def emit(record: SourceRecord) -> None:
        out.write(record.value.replace(b"\n", b" ") + b"\n")

    counts = _run(records, emit, realtime, progress, every_s)
    out.flush()
    return counts


__all__ = ["Progress", "SendCounts", "new_run_id", "send_records", "write_records"]
