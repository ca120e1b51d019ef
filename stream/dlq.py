"""Reading and replaying dead letters (``posts.dlq``, indexed by the sink in ``dead_letters``).

Counting and listing go through the read path (:class:`~stream.query.QueryClient`), so they
work while the sink runs and after. Replay sends records back to ``posts``: the stored
bytes as they were (after a fix in the worker, e.g. a model that failed), or fixed records
from a JSONL file (one post per line, e.g. edited output of ``swingdial dlq list -f json``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from stream.config import Settings
from stream.query import QueryClient

LIST_COLUMNS = (
    "dlq_partition, dlq_offset, reason_kind, reason, source_partition, source_offset, "
    "truncated, original_size, dead_at"
)


def reason_counts(client: QueryClient) -> pa.Table:
    """Dead letters per kind of reason, most frequent first."""
    return client.sql(
        "SELECT reason_kind, records, truncated, last_at FROM v_dead_letter_reasons "
        "ORDER BY records DESC, reason_kind"
    )


def _where(reason: str | None) -> tuple[str, list[Any]]:
    if reason is None:
        return "", []
    return " WHERE starts_with(lower(reason), lower(?))", [reason]


def list_dead_letters(
    client: QueryClient, reason: str | None = None, limit: int = 20, with_raw: bool = False
) -> pa.Table:
    """The newest dead letters (optionally those whose reason starts with ``reason``: a
    reason kind from :func:`reason_counts`, or more of the text)."""
    where, params = _where(reason)
    columns = LIST_COLUMNS + (", key, raw" if with_raw else "")
    return client.sql(
        f"SELECT {columns} FROM dead_letters{where} "
        "ORDER BY dead_at DESC NULLS LAST, dlq_partition, dlq_offset DESC LIMIT ?",
        [*params, limit],
    )


@dataclass(frozen=True)
class Replayable:
    key: bytes | None
    value: bytes
    origin: str  # where it came from, for the report


def stored_records(client: QueryClient, reason: str | None, limit: int) -> Iterator[Replayable]:
    """Dead letters as stored; truncated ones are skipped (their bytes are incomplete)."""
    table = list_dead_letters(client, reason, limit, with_raw=True)
    for row in table.to_pylist():
        if row["truncated"]:
            continue
        yield Replayable(row["key"], row["raw"], f"dlq {row['dlq_partition']}@{row['dlq_offset']}")


def file_records(path: Path) -> Iterator[Replayable]:
    """Fixed posts from a JSONL file: each line a post object, or a ``dlq list -f json`` row
    whose ``raw`` holds the (edited) post text."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        if isinstance(item, dict) and "raw" in item and "dlq_offset" in item:
            value = item["raw"].encode() if isinstance(item["raw"], str) else bytes(item["raw"])
        else:
            value = json.dumps(item).encode()
        key = None
        if isinstance(item, dict) and isinstance(item.get("author"), dict):
            key = str(item["author"].get("id", "")).encode() or None
        yield Replayable(key, value, f"{path.name}:{number}")


def replay(settings: Settings, records: Iterable[Replayable], dry_run: bool = False) -> int:
    """Send records to ``posts`` (acks=all); the worker validates them again."""
    from stream import kafka

    items = list(records)
    if dry_run or not items:
        return len(items)
    producer = kafka.producer(settings)
    try:
        for item in items:
            producer.send(settings.topic.posts, key=item.key, value=item.value)
        producer.flush()
    finally:
        producer.close()
    return len(items)
