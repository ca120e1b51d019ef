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


def table(text: str) -> Table:
    """A table from its text: a first line ``name (key columns)``, then one line per column,
    ``name  TYPE[!] [= fill]  | meaning`` (``!``: NOT NULL; ``= fill``: the SQL the INSERT
    uses instead of a batch column)."""
    first, *lines = text.strip().splitlines()
    name, _, key = first.partition(" ")
    parsed = []
    for line in lines:
        spec, _, doc = line.partition("|")
        head, _, fill = spec.partition("=")
        column_name, type_ = head.split()
        parsed.append(
            Column(
                column_name,
                type_.rstrip("!"),
                doc.strip(),
                not_null=type_.endswith("!"),
                fill=fill.strip() or None,
            )
        )
    return Table(name, tuple(parsed), tuple(k.strip() for k in key.strip("() ").split(",")))


RUNS = table("""
runs (run_id)
    run_id         VARCHAR!      | the run (one pass over an event)
    event_id       VARCHAR!      | event file id
    source         VARCHAR       | source of the run's latest post
    model_version  VARCHAR       | model of the run's latest scored post
    replay_of      VARCHAR       | the original run when `source` is `replay:<RUN>`, else NULL
    first_seen_at  TIMESTAMPTZ!  | wall-clock time the sink first stored a post
    last_seen_at   TIMESTAMPTZ!  | wall-clock time the sink last stored a post
""")
POSTS = table("""
posts (run_id, post_id)
    run_id       VARCHAR!      | the run (one pass over an event)
    post_id      VARCHAR!      | the post's id (unique within a run)
    event_id     VARCHAR!      | event file id (`stream/events/<id>.yaml`)
    event_time   TIMESTAMPTZ!  | when it was posted (event time, UTC)
    minute       TIMESTAMPTZ!  | `event_time` truncated to the minute (charts group by it)
    author_id    VARCHAR!      | author
    text         VARCHAR!      | post text
    lang         VARCHAR       | language code
    repost_of    VARCHAR       | id of the reposted post, if any
    reply_to     VARCHAR       | id of the replied-to post, if any
    source       VARCHAR       | who produced it: `simulator`, `file:…`, `replay:<RUN>`
    raw          JSON!         | the post as validated by the worker (`swingdial replay` reads it)
    truth        JSON          | simulator ground truth (never read by the scorer)
    received_at  TIMESTAMPTZ   | when the worker took the post from Kafka
""")
AUTHORS = table("""
authors (run_id, author_id)
    run_id           VARCHAR!                   | the run (one pass over an event)
    author_id        VARCHAR!                   | author
    handle           VARCHAR!                   | handle on the latest post
    bio              VARCHAR                    | profile text on the latest post
    followers        BIGINT                     | follower count on the latest post
    cohort           VARCHAR!                   | cohort called on the latest post (event time)
    cohort_evidence  VARCHAR[]                  | why: the evidence behind that call
    posts_seen       BIGINT! = n                | stored (de-duplicated) posts of the author
    updated_at       TIMESTAMPTZ! = event_time  | `event_time` of that latest post
""")
SCORES = table("""
scores (run_id, post_id)
    run_id         VARCHAR!              | the run (one pass over an event)
    post_id        VARCHAR!              | the post's id (unique within a run)
    event_time     TIMESTAMPTZ!          | when it was posted (event time, UTC)
    minute         TIMESTAMPTZ!          | `event_time` truncated to the minute (charts group by it)
    author_id      VARCHAR!              | author
    cohort         VARCHAR!              | cohort called on this post (`models/COHORTS.md`)
    sentiment      VARCHAR!              | top sentiment label
    p_negative     FLOAT!                | probability of negative
    p_neutral      FLOAT!                | probability of neutral
    p_positive     FLOAT!                | probability of positive
    net_sentiment  FLOAT!                | `p_positive - p_negative`, in [-1, 1]
    emotion        VARCHAR               | top emotion label (NULL if the model has none)
    topic          VARCHAR               | top topic label (NULL if the model has none)
    model_version  VARCHAR!              | model, runtime and precision that scored it
    received_at    TIMESTAMPTZ           | when the worker took the post from Kafka
    scored_at      TIMESTAMPTZ!          | when the worker scored it
    stored_at      TIMESTAMPTZ! = now()  | when the sink committed it
""")
STANCES = table("""
stances (run_id, post_id, target)
    run_id      VARCHAR!      | the run (one pass over an event)
    post_id     VARCHAR!      | the post's id (unique within a run)
    target      VARCHAR!      | stance target, e.g. `Donald Trump`
    minute      TIMESTAMPTZ!  | `event_time` truncated to the minute (charts group by it)
    cohort      VARCHAR!      | cohort called on this post (`models/COHORTS.md`)
    label       VARCHAR!      | favor / against / none
    p_favor     FLOAT!        | probability of favor
    p_against   FLOAT!        | probability of against
    p_none      FLOAT!        | probability of none
    net_stance  FLOAT!        | `p_favor - p_against`, in [-1, 1]
""")
MOMENTS = table("""
moments (event_id, moment_id)
    event_id     VARCHAR!      | event file id
    moment_id    VARCHAR!      | the moment's id in the event file
    at_time      TIMESTAMPTZ!  | when it starts (event time)
    until_time   TIMESTAMPTZ   | when it ends (NULL: until the next moment)
    title        VARCHAR!      | title shown on the timeline
    topic        VARCHAR       | topic id
    description  VARCHAR       | longer text
""")
ANNOTATIONS = table("""
annotations (annotation_id)
    annotation_id  VARCHAR!      | the note's id
    event_id       VARCHAR       | event file id
    run_id         VARCHAR       | run (NULL: every run of the event)
    at_time        TIMESTAMPTZ!  | event time the note is pinned to
    text           VARCHAR!      | the note
    author         VARCHAR!      | who wrote it
    created_at     TIMESTAMPTZ!  | when it was written
""")
KAFKA_OFFSETS = table("""
kafka_offsets (consumer_group, topic, partition)
    consumer_group  VARCHAR! = $group     | the sink's consumer group
    topic           VARCHAR!              | topic
    partition       INTEGER!              | partition
    next_offset     BIGINT!               | the first offset NOT yet stored
    updated_at      TIMESTAMPTZ! = now()  | commit time
""")
SINK_REJECTS = table("""
sink_rejects (topic, partition, kafka_offset)
    topic         VARCHAR!              | topic
    partition     INTEGER!              | partition
    kafka_offset  BIGINT!               | offset
    reason        VARCHAR!              | why it was rejected
    raw           BLOB                  | the value exactly as it came off Kafka
    rejected_at   TIMESTAMPTZ! = now()  | when
""")
DEAD_LETTERS = table("""
dead_letters (dlq_partition, dlq_offset)
    dlq_partition     INTEGER!              | partition in `posts.dlq`
    dlq_offset        BIGINT!               | offset in `posts.dlq`
    reason            VARCHAR!              | the worker's reason
    reason_kind       VARCHAR!              | the reason's words before the first `:` (for counting)
    source_topic      VARCHAR               | where the record was read
    source_partition  INTEGER               | where the record was read
    source_offset     BIGINT                | where the record was read
    truncated         BOOLEAN!              | `raw` holds only the first 64 KiB
    original_size     BIGINT!               | size of the whole record in bytes
    original_sha256   VARCHAR               | SHA-256 of the whole record (when truncated)
    key               BLOB                  | the record's key
    raw               BLOB                  | the record's bytes (or their first 64 KiB)
    dead_at           TIMESTAMPTZ           | when the worker dead-lettered it
    stored_at         TIMESTAMPTZ! = now()  | when the sink stored it
""")
SINK_STATS = table("""
sink_stats (consumer_group)
    consumer_group         VARCHAR!     | the sink's consumer group
    pid                    INTEGER      | current sink process
    started_at             TIMESTAMPTZ  | when the current sink process started
    batches                BIGINT!      | batches stored
    records                BIGINT!      | Kafka records consumed (all topics)
    rows_written           BIGINT!      | new posts stored
    duplicates             BIGINT!      | scored posts already stored (ignored)
    annotations            BIGINT!      | annotations stored
    rejects                BIGINT!      | records rejected
    last_batch_records     INTEGER      | records in the last batch
    last_batch_rows        INTEGER      | new posts in the last batch
    last_batch_latency_ms  DOUBLE       | decode + build + one transaction
    last_e2e_latency_ms    DOUBLE       | mean stored_at - received_at of the last batch
    lag                    BIGINT       | records behind the end of the topics (when known)
    last_batch_at          TIMESTAMPTZ  | when the last batch was stored
""")
SCHEMA_INFO = table("""
schema_info (key)
    key    VARCHAR!  | `schema_version`
    value  VARCHAR   | its value
""")

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
