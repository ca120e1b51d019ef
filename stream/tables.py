"""The stored tables, specified once.

Each :class:`Table` lists its columns (name, DuckDB type, nullability, meaning) and says,
per column, where the sink's INSERT takes the value from: a column of the same name in
the batch's Arrow table (the default) or an SQL expression (``fill``, e.g. ``now()``).
From that one specification come

* the DDL (:func:`tables_sql`),
* the Arrow schema of each batch table (:meth:`Table.batch_schema`),
* the column list of each INSERT (:meth:`Table.select_list`),
* the column tables in ``docs/schema.md`` (:func:`docs_markdown`; a test keeps the doc
  in step, ``python -m stream.tables --write-docs`` rewrites it).

Adding a column is one line here (plus a migration note in ``stream/store.py``).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

# DuckDB type -> the Arrow type a batch carries for it. JSON travels as text and is cast
# on insert (see Column.insert_expr).
ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "TIMESTAMPTZ": TIMESTAMP,
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "BOOLEAN": pa.bool_(),
    "BLOB": pa.binary(),
    "VARCHAR[]": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB type, a key of ARROW_TYPES
    doc: str
    not_null: bool = False
    fill: str | None = None  # SQL the INSERT uses instead of the batch column of this name

    @property
    def arrow(self) -> pa.Field:
        return pa.field(self.name, ARROW_TYPES[self.type])

    @property
    def insert_expr(self) -> str:
        if self.fill is not None:
            return self.fill
        return f"{self.name}::JSON" if self.type == "JSON" else self.name


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names) or not set(self.primary_key) <= set(names):
            raise ValueError(f"table {self.name}: repeated column or unknown key column")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def ddl(self) -> str:
        width = max(len(c.name) for c in self.columns)
        lines = [
            f"    {c.name.ljust(width)} {c.type}{' NOT NULL' if c.not_null else ''}"
            for c in self.columns
        ]
        lines.append(f"    PRIMARY KEY ({', '.join(self.primary_key)})")
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n" + ",\n".join(lines) + "\n);"

    def batch_columns(self) -> list[Column]:
        """The columns a batch must carry (those the INSERT does not compute)."""
        return [c for c in self.columns if c.fill is None]

    def batch_schema(self) -> pa.Schema:
        return pa.schema([c.arrow for c in self.batch_columns()])

    def select_list(self, prefix: str = "") -> str:
        """The INSERT's SELECT list, in table order (``prefix`` qualifies batch columns)."""
        return ", ".join(
            c.insert_expr if c.fill is not None else prefix + c.insert_expr for c in self.columns
        )

    def insert_sql(
        self, source: str, *, verb: str = "INSERT OR IGNORE INTO", tail: str = "", prefix: str = ""
    ) -> str:
        """``{verb} table (columns) SELECT ... FROM source{tail}``; every column named, so
        the statement does not depend on the order of columns in an older file."""
        return (
            f"{verb} {self.name} ({', '.join(self.names)})\n"
            f"SELECT {self.select_list(prefix)}\nFROM {source}{tail}"
        )


def _c(name: str, type_: str, doc: str) -> Column:
    """A nullable column."""
    return Column(name, type_, doc)


def _n(name: str, type_: str, doc: str, *, fill: str | None = None) -> Column:
    """A NOT NULL column."""
    return Column(name, type_, doc, not_null=True, fill=fill)


RUN = _n("run_id", "VARCHAR", "the run (one pass over an event)")
POST = _n("post_id", "VARCHAR", "the post's id (unique within a run)")
EVENT_TIME = _n("event_time", "TIMESTAMPTZ", "when it was posted (event time, UTC)")
MINUTE = _n("minute", "TIMESTAMPTZ", "`event_time` truncated to the minute (what charts group by)")
AUTHOR = _n("author_id", "VARCHAR", "author")
COHORT = _n("cohort", "VARCHAR", "the author's cohort call on this post (`models/COHORTS.md`)")
RECEIVED = _c("received_at", "TIMESTAMPTZ", "when the worker took the post from Kafka")
NOW_STORED = "when the sink stored it"

RUNS = Table(
    "runs",
    (
        RUN,
        _n("event_id", "VARCHAR", "event file id"),
        _c("source", "VARCHAR", "source of the run's latest post"),
        _c("model_version", "VARCHAR", "model of the run's latest scored post"),
        _c("replay_of", "VARCHAR", "the original run when `source` is `replay:<RUN>`, else NULL"),
        _n("first_seen_at", "TIMESTAMPTZ", "wall-clock time the sink first stored a post"),
        _n("last_seen_at", "TIMESTAMPTZ", "wall-clock time the sink last stored a post"),
    ),
    ("run_id",),
)
POSTS = Table(
    "posts",
    (
        RUN,
        POST,
        _n("event_id", "VARCHAR", "event file id (`stream/events/<id>.yaml`)"),
        EVENT_TIME,
        MINUTE,
        AUTHOR,
        _n("text", "VARCHAR", "post text"),
        _c("lang", "VARCHAR", "language code"),
        _c("repost_of", "VARCHAR", "id of the reposted post, if any"),
        _c("reply_to", "VARCHAR", "id of the replied-to post, if any"),
        _c("source", "VARCHAR", "who produced it: `simulator`, `file:…`, `replay:<RUN>`"),
        _n(
            "raw",
            "JSON",
            "the post exactly as validated by the worker; `swingdial replay` reads this",
        ),
        _c("truth", "JSON", "simulator ground truth (never read by the scorer)"),
        RECEIVED,
    ),
    ("run_id", "post_id"),
)
AUTHORS = Table(
    "authors",
    (
        RUN,
        AUTHOR,
        _n("handle", "VARCHAR", "handle on the latest post"),
        _c("bio", "VARCHAR", "profile text on the latest post"),
        _c("followers", "BIGINT", "follower count on the latest post"),
        _n("cohort", "VARCHAR", "the cohort called on the author's latest post by event time"),
        _c("cohort_evidence", "VARCHAR[]", "why: the evidence behind that call"),
        _n("posts_seen", "BIGINT", "stored (de-duplicated) posts of the author", fill="n"),
        _n("updated_at", "TIMESTAMPTZ", "`event_time` of that latest post", fill="event_time"),
    ),
    ("run_id", "author_id"),
)
SCORES = Table(
    "scores",
    (
        RUN,
        POST,
        EVENT_TIME,
        MINUTE,
        AUTHOR,
        COHORT,
        _n("sentiment", "VARCHAR", "top sentiment label"),
        _n("p_negative", "FLOAT", "probability of negative"),
        _n("p_neutral", "FLOAT", "probability of neutral"),
        _n("p_positive", "FLOAT", "probability of positive"),
        _n("net_sentiment", "FLOAT", "`p_positive - p_negative`, in [-1, 1]"),
        _c("emotion", "VARCHAR", "top emotion label (NULL if the model has none)"),
        _c("topic", "VARCHAR", "top topic label (NULL if the model has none)"),
        _n("model_version", "VARCHAR", "model, runtime and precision that scored it"),
        RECEIVED,
        _n("scored_at", "TIMESTAMPTZ", "when the worker scored it"),
        _n("stored_at", "TIMESTAMPTZ", "when the sink committed it", fill="now()"),
    ),
    ("run_id", "post_id"),
)
STANCES = Table(
    "stances",
    (
        RUN,
        POST,
        _n("target", "VARCHAR", "stance target, e.g. `Donald Trump`"),
        MINUTE,
        COHORT,
        _n("label", "VARCHAR", "favor / against / none"),
        _n("p_favor", "FLOAT", "probability of favor"),
        _n("p_against", "FLOAT", "probability of against"),
        _n("p_none", "FLOAT", "probability of none"),
        _n("net_stance", "FLOAT", "`p_favor - p_against`, in [-1, 1]"),
    ),
    ("run_id", "post_id", "target"),
)
MOMENTS = Table(
    "moments",
    (
        _n("event_id", "VARCHAR", "event file id"),
        _n("moment_id", "VARCHAR", "the moment's id in the event file"),
        _n("at_time", "TIMESTAMPTZ", "when it starts (event time)"),
        _c("until_time", "TIMESTAMPTZ", "when it ends (NULL: until the next moment)"),
        _n("title", "VARCHAR", "title shown on the timeline"),
        _c("topic", "VARCHAR", "topic id"),
        _c("description", "VARCHAR", "longer text"),
    ),
    ("event_id", "moment_id"),
)
ANNOTATIONS = Table(
    "annotations",
    (
        _n("annotation_id", "VARCHAR", "the note's id"),
        _c("event_id", "VARCHAR", "event file id"),
        _c("run_id", "VARCHAR", "run (NULL: every run of the event)"),
        _n("at_time", "TIMESTAMPTZ", "event time the note is pinned to"),
        _n("text", "VARCHAR", "the note"),
        _n("author", "VARCHAR", "who wrote it"),
        _n("created_at", "TIMESTAMPTZ", "when it was written"),
    ),
    ("annotation_id",),
)
KAFKA_OFFSETS = Table(
    "kafka_offsets",
    (
        _n("consumer_group", "VARCHAR", "the sink's consumer group", fill="$group"),
        _n("topic", "VARCHAR", "topic"),
        _n("partition", "INTEGER", "partition"),
        _n("next_offset", "BIGINT", "the first offset NOT yet stored"),
        _n("updated_at", "TIMESTAMPTZ", "commit time", fill="now()"),
    ),
    ("consumer_group", "topic", "partition"),
)
SINK_REJECTS = Table(
    "sink_rejects",
    (
        _n("topic", "VARCHAR", "topic"),
        _n("partition", "INTEGER", "partition"),
        _n("kafka_offset", "BIGINT", "offset"),
        _n("reason", "VARCHAR", "why it was rejected"),
        _c("raw", "BLOB", "the value exactly as it came off Kafka"),
        _n("rejected_at", "TIMESTAMPTZ", "when", fill="now()"),
    ),
    ("topic", "partition", "kafka_offset"),
)
DEAD_LETTERS = Table(
    "dead_letters",
    (
        _n("dlq_partition", "INTEGER", "partition in `posts.dlq`"),
        _n("dlq_offset", "BIGINT", "offset in `posts.dlq`"),
        _n("reason", "VARCHAR", "the worker's reason"),
        _n("reason_kind", "VARCHAR", "the reason's words before the first `:` (for counting)"),
        _c("source_topic", "VARCHAR", "where the record was read"),
        _c("source_partition", "INTEGER", "where the record was read"),
        _c("source_offset", "BIGINT", "where the record was read"),
        _n("truncated", "BOOLEAN", "`raw` holds only the first 64 KiB"),
        _n("original_size", "BIGINT", "size of the whole record in bytes"),
        _c("original_sha256", "VARCHAR", "SHA-256 of the whole record (when truncated)"),
        _c("key", "BLOB", "the record's key"),
        _c("raw", "BLOB", "the record's bytes (or their first 64 KiB)"),
        _c("dead_at", "TIMESTAMPTZ", "when the worker dead-lettered it"),
        _n("stored_at", "TIMESTAMPTZ", NOW_STORED, fill="now()"),
    ),
    ("dlq_partition", "dlq_offset"),
)
SINK_STATS = Table(
    "sink_stats",
    (
        _n("consumer_group", "VARCHAR", "the sink's consumer group"),
        _c("pid", "INTEGER", "current sink process"),
        _c("started_at", "TIMESTAMPTZ", "when the current sink process started"),
        _n("batches", "BIGINT", "batches stored"),
        _n("records", "BIGINT", "Kafka records consumed (all topics)"),
        _n("rows_written", "BIGINT", "new posts stored"),
        _n("duplicates", "BIGINT", "scored posts already stored (ignored)"),
        _n("annotations", "BIGINT", "annotations stored"),
        _n("rejects", "BIGINT", "records rejected"),
        _c("last_batch_records", "INTEGER", "records in the last batch"),
        _c("last_batch_rows", "INTEGER", "new posts in the last batch"),
        _c("last_batch_latency_ms", "DOUBLE", "decode + build + one transaction"),
        _c("last_e2e_latency_ms", "DOUBLE", "mean stored_at - received_at of the last batch"),
        _c("lag", "BIGINT", "records behind the end of the topics (when known)"),
        _c("last_batch_at", "TIMESTAMPTZ", "when the last batch was stored"),
    ),
    ("consumer_group",),
)
SCHEMA_INFO = Table(
    "schema_info",
    (
        _n("key", "VARCHAR", "`schema_version`"),
        _c("value", "VARCHAR", "its value"),
    ),
    ("key",),
)

TABLES: tuple[Table, ...] = (
    RUNS,
    POSTS,
    AUTHORS,
    SCORES,
    STANCES,
    MOMENTS,
    ANNOTATIONS,
    KAFKA_OFFSETS,
    SINK_REJECTS,
    DEAD_LETTERS,
    SINK_STATS,
    SCHEMA_INFO,
)


def tables_sql() -> str:
    return "\n".join(table.ddl() for table in TABLES) + "\n"


def merged_batch_schema(*tables: Table, first: tuple[pa.Field, ...] = ()) -> pa.Schema:
    """One wide batch schema for several tables filled from the same batch (the union of
    their batch columns, first occurrence wins; a name with two types is an error)."""
    fields: dict[str, pa.Field] = {f.name: f for f in first}
    for table in tables:
        for column in table.batch_columns():
            field = column.arrow
            if fields.setdefault(field.name, field).type != field.type:
                raise ValueError(f"column {field.name} has two types across {tables}")
    return pa.schema(list(fields.values()))


# --------------------------------------------------------------------------- docs

DOCS = Path(__file__).resolve().parent.parent / "docs" / "schema.md"
_BLOCK = re.compile(r"<!-- columns:(\w+) -->\n.*?<!-- /columns -->", re.S)


def columns_markdown(table: Table) -> str:
    rows = [
        f"| {c.name} | {c.type}{' NOT NULL' if c.not_null else ''} | {c.doc} |"
        for c in table.columns
    ]
    key = ", ".join(table.primary_key)
    return "\n".join(
        [f"Primary key `({key})`.", "", "| column | type | meaning |", "|---|---|---|", *rows]
    )


def docs_markdown(text: str) -> str:
    """``text`` with every ``<!-- columns:NAME -->`` block regenerated from the spec."""
    by_name = {table.name: table for table in TABLES}

    def block(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"<!-- columns:{name} -->\n{columns_markdown(by_name[name])}\n<!-- /columns -->"

    return _BLOCK.sub(block, text)


def main(argv: list[str]) -> int:
    """``python -m stream.tables --write-docs`` rewrites the column tables in docs/schema.md;
    without arguments, prints the DDL."""
    if argv == ["--write-docs"]:
        DOCS.write_text(docs_markdown(DOCS.read_text()))
        return 0
    print(tables_sql(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
