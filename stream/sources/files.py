"""Ingest real posts from JSONL or CSV files (optionally gzipped) as :class:`SourceRecord`.

Columns are found by name: an explicit mapping (``ColumnMap``) wins, otherwise the first of
the usual names that a row has (``id``/``id_str``, ``text``/``full_text``, ``created_at``,
``author_id``/``user.id_str``, ...). Dotted names reach into nested JSON (``user.screen_name``),
so a Twitter API dump, a spreadsheet export and our own dry-run files all load without a
mapping.

Bad rows are never dropped silently. A row is bad exactly when
:func:`stream.schema.parse_post` rejects it, i.e. when the worker would. By default it is
still sent: as the row mapped to post fields (with the original under ``_source``), or as
the raw line if it is not even JSON, so the worker dead-letters it with its reason and the
DLQ keeps the evidence. With ``strict=True`` the first bad row raises :class:`BadRow`
instead, which is how to check a file before a run.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

from stream.schema import InvalidPost, parse_post
from stream.sources import SourceRecord

FileFormat = Literal["jsonl", "csv", "tsv"]

# The names a column usually has, tried in order when no mapping is given.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "id": ("id", "id_str", "post_id", "tweet_id", "status_id"),
    "text": ("text", "full_text", "content", "body", "tweet", "message"),
    "time": ("created_at", "event_time", "timestamp", "time", "date", "datetime", "posted_at"),
    "author_id": ("author_id", "author.id", "user_id", "user.id_str", "user.id", "user"),
    "handle": (
        "author_handle",
        "author.handle",
        "handle",
        "username",
        "screen_name",
        "user.screen_name",
        "user_screen_name",
        "author",
    ),
    "bio": ("author_bio", "author.bio", "bio", "description", "user.description", "user_bio"),
    "followers": (
        "author_followers",
        "author.followers",
        "followers",
        "followers_count",
        "user.followers_count",
        "user_followers",
    ),
    "lang": ("lang", "language"),
    "repost_of": ("repost_of", "retweeted_status_id", "retweet_of"),
    "reply_to": ("reply_to", "in_reply_to_status_id_str", "in_reply_to_status_id"),
    "event_id": ("event_id",),
    "run_id": ("run_id",),
    "truth": ("truth",),
}

_TIME_FORMATS = (
    "%a %b %d %H:%M:%S %z %Y",  # Twitter v1.1: "Mon Aug 12 20:45:01 +0000 2024"
    "%Y-%m-%d %H:%M:%S%z",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%m/%d/%Y %H:%M:%S",  # US spreadsheet exports
    "%m/%d/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
)
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


@dataclass(frozen=True)
class ColumnMap:
    """Explicit column names (dotted for nested JSON); ``None`` means "try the usual names"."""

    id: str | None = None
    text: str | None = None
    time: str | None = None
    author_id: str | None = None
    handle: str | None = None
    bio: str | None = None
    followers: str | None = None
    lang: str | None = None
    repost_of: str | None = None
    reply_to: str | None = None

    def names(self, field: str) -> tuple[str, ...]:
        explicit = getattr(self, field, None)
        return (explicit,) if explicit else CANDIDATES[field]


COLUMN_FIELDS = tuple(f.name for f in fields(ColumnMap))


class BadRow(ValueError):
    """A row that cannot become a post (raised only in strict mode)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def detect_format(path: Path) -> FileFormat:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if last == ".csv":
        return "csv"
    if last == ".tsv":
        return "tsv"
    raise ValueError(f"cannot tell the format of {path.name}; pass --format jsonl|csv|tsv")


def parse_time(value: Any) -> datetime:
    """Parse the time formats real exports use; naive times are taken as UTC.

    Accepts ISO 8601 (with ``Z``), epoch seconds / milliseconds / microseconds, Twitter's
    ``created_at``, RFC 2822 and common spreadsheet layouts. Raises ``ValueError``.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        parsed = _from_epoch(float(value))
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        parsed = _from_epoch(float(text)) if _NUMBER.match(text) else _parse_text_time(text)
    else:
        raise ValueError(f"not a time: {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _from_epoch(number: float) -> datetime:
    for scale in (1, 1e3, 1e6, 1e9):  # s, ms, us, ns: the first that lands before 2100
        if abs(number / scale) < 4.2e9:
            return datetime.fromtimestamp(number / scale, tz=UTC)
    raise ValueError(f"epoch value out of range: {number}")


def _parse_text_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"unrecognised time format: {text!r}") from None


def _lookup(row: dict[str, Any], name: str) -> Any:
    if name in row:
        return row[name]
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _first(row: dict[str, Any], names: tuple[str, ...], scalar: bool = True) -> Any:
    for name in names:
        value = _lookup(row, name)
        if value is None or (isinstance(value, str) and value == ""):
            continue
        if scalar and isinstance(value, dict | list):
            continue
        return value
    return None


def _as_id(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _as_count(value: Any) -> Any:
    if isinstance(value, str) and _NUMBER.match(value.strip().replace(",", "")):
        return int(float(value.strip().replace(",", "")))
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # anything else is left for validation to reject with a reason


def map_row(
    row: dict[str, Any],
    columns: ColumnMap,
    event_id: str,
    run_id: str,
    source: str,
    override_ids: bool = False,
) -> dict[str, Any]:
    """Turn one file row into ``Post`` fields, keeping unparsable values so they fail loudly."""
    text = _first(row, columns.names("text"))
    raw_time = _first(row, columns.names("time"))
    try:
        event_time: Any = parse_time(raw_time).isoformat() if raw_time is not None else None
    except ValueError:
        event_time = raw_time
    author_id = _as_id(_first(row, columns.names("author_id")))
    handle = _first(row, columns.names("handle"))
    author_id = author_id if author_id is not None else handle
    handle = handle if handle is not None else author_id
    post_id = _as_id(_first(row, columns.names("id")))
    if post_id is None and isinstance(text, str):
        # Stable across re-ingests of the same file, so downstream de-duplication still works.
        digest = hashlib.sha1(f"{author_id}|{raw_time}|{text}".encode()).hexdigest()[:16]
        post_id = f"h{digest}"
    data: dict[str, Any] = {
        "id": post_id,
        "run_id": run_id if override_ids else _first(row, CANDIDATES["run_id"]) or run_id,
        "event_id": event_id if override_ids else _first(row, CANDIDATES["event_id"]) or event_id,
        "event_time": event_time,
        "author": {
            "id": author_id if author_id is not None else "unknown",
            "handle": handle if handle is not None else "unknown",
            "bio": _first(row, columns.names("bio")) or "",
            "followers": _as_count(_first(row, columns.names("followers")) or 0),
        },
        "text": text,
        "lang": _first(row, columns.names("lang")),
        "repost_of": _as_id(_first(row, columns.names("repost_of"))),
        "reply_to": _as_id(_first(row, columns.names("reply_to"))),
        "source": source,  # where this copy came from (a dump's own "source" is its client)
        "truth": _first(row, CANDIDATES["truth"], scalar=False),
    }
    return {k: v for k, v in data.items() if v is not None}


def _open(path: Path) -> IO[bytes]:
    if path.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.GzipFile(path, "rb"))
    return path.open("rb")


def read_rows(path: Path, fmt: FileFormat) -> Iterator[tuple[str, dict[str, Any] | None, bytes]]:
    """Yield ``(where, row or None if unreadable, raw bytes)`` for every non-blank row."""
    with _open(path) as handle:
        if fmt == "jsonl":
            for number, line in enumerate(handle, start=1):
                raw = line.rstrip(b"\r\n")
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    row = None
                yield f"line {number}", row if isinstance(row, dict) else None, raw
            return
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
        reader = csv.DictReader(text, delimiter="\t" if fmt == "tsv" else ",")
        for number, row in enumerate(reader, start=2):  # row 1 is the header
            clean = {k: v for k, v in row.items() if k is not None}
            raw = json.dumps(row, ensure_ascii=False).encode()
            yield f"row {number}", clean, raw


def ingest(
    path: Path | str,
    event_id: str,
    run_id: str,
    fmt: FileFormat | None = None,
    columns: ColumnMap | None = None,
    speed: float = 0.0,
    strict: bool = False,
    override_ids: bool = False,
) -> Iterator[SourceRecord]:
    """Yield one record per row of ``path``.

    ``speed`` > 0 paces by the posts' own timestamps (``delay_s`` = gap / speed; files that
    are not in time order never wait backwards); 0 sends as fast as possible. ``event_id``
    and ``run_id`` fill rows that lack them (``override_ids`` makes them replace the rows').
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    columns = columns or ColumnMap()
    source = f"file:{path.name}"
    previous: datetime | None = None
    for where, row, raw in read_rows(path, fmt):
        if row is None:
            reason = "not a JSON object"
            if strict:
                raise BadRow(where, reason)
            yield SourceRecord(0.0, "malformed", raw=raw, reason=f"{where}: {reason}")
            continue
        data = map_row(row, columns, event_id, run_id, source, override_ids)
        try:
            # The worker's own check, so "bad here" means exactly "dead-lettered there".
            post = parse_post(json.dumps(data, ensure_ascii=False, default=str))
        except InvalidPost as exc:
            reason = exc.reason
            if strict:
                raise BadRow(where, reason) from None
            data["_source"] = {
                "file": path.name,
                "where": where,
                "raw": raw.decode("utf-8", "replace"),
            }
            yield SourceRecord(
                0.0,
                "malformed",
                raw=json.dumps(data, ensure_ascii=False, default=str).encode(),
                reason=f"{where}: {reason}",
                key_hint=author if isinstance(author := data["author"]["id"], str) else None,
            )
            continue
        delay = 0.0
        if speed > 0 and previous is not None:
            delay = max(0.0, (post.event_time - previous).total_seconds()) / speed
        if previous is None or post.event_time > previous:
            previous = post.event_time
        yield SourceRecord(delay, "repost" if post.repost_of else "original", post=post)


__all__ = [
    "CANDIDATES",
    "COLUMN_FIELDS",
    "BadRow",
    "ColumnMap",
    "FileFormat",
    "detect_format",
    "ingest",
    "map_row",
    "parse_time",
    "read_rows",
]
