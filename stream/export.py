"""Archive: the stored runs as a hive-partitioned Parquet (or CSV) folder.

``posts.raw`` keeps every post exactly as validated, so an export plus the model version is
enough to re-score a run anywhere. Layout: ``DIR/<table>/event_id=<e>/run_id=<r>/*.parquet``
so any engine (DuckDB ``read_parquet('DIR/posts/**/*.parquet', hive_partitioning=true)``,
pyarrow, Spark) can prune by event and run.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pyarrow.dataset as ds

from stream.config import Settings
from stream.query import QueryClient
from stream.store import connect, scalar

log = logging.getLogger(__name__)

# Every exported table carries event_id and run_id (the partition keys).
EXPORT_QUERIES: dict[str, str] = {
    "posts": "SELECT * FROM posts",
    "scores": (
        "SELECT s.*, p.event_id FROM scores s "
        "JOIN posts p ON p.run_id = s.run_id AND p.post_id = s.post_id"
    ),
    "stances": (
        "SELECT st.*, p.event_id FROM stances st "
        "JOIN posts p ON p.run_id = st.run_id AND p.post_id = st.post_id"
    ),
    "authors": "SELECT a.*, r.event_id FROM authors a JOIN runs r ON r.run_id = a.run_id",
}
ORDER = {"posts": "event_time, post_id", "scores": "event_time, post_id"}
FORMATS = ("parquet", "csv")


# Tables whose rows belong to one post; a cutoff on scores.stored_at makes them agree.
PER_POST = {"posts", "scores", "stances"}


def _query(table: str, run_id: str | None, cutoff: object = None) -> tuple[str, list[object]]:
    sql = f"SELECT * FROM ({EXPORT_QUERIES[table]}) x"
    where: list[str] = []
    params: list[object] = []
    if run_id:
        where.append("run_id = ?")
        params.append(run_id)
    if cutoff is not None and table in PER_POST:
        where.append(
            "(run_id, post_id) IN (SELECT run_id, post_id FROM scores WHERE stored_at <= ?)"
        )
        params.append(cutoff)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {ORDER.get(table, 'run_id')}"
    return sql, params


def _prepare(output: Path, overwrite: bool) -> None:
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output} is not empty (use --overwrite to replace it)")
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)


def export(
    settings: Settings,
    output: Path,
    run_id: str | None = None,
    fmt: str = "parquet",
    overwrite: bool = False,
    client: QueryClient | None = None,
) -> dict[str, int]:
    """Write every run (or one) to ``output``; returns rows written per table.

    With the sink running the rows come over Flight and pyarrow writes the dataset; after
    the event DuckDB's own ``COPY ... (PARTITION_BY (event_id, run_id))`` writes it from a
    read-only connection.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    output = Path(output)
    own_client = client is None
    client = client or QueryClient(settings)
    try:
        if run_id:
            found = client.sql("SELECT count(*) AS n FROM runs WHERE run_id = ?", [run_id])
            if found.column("n")[0].as_py() == 0:
                raise LookupError(f"no run {run_id!r} in {settings.db_path}")
        _prepare(output, overwrite)
        if client.server_info() is not None:
            return _export_flight(client, output, run_id, fmt)
        return _export_copy(client, output, run_id, fmt)
    finally:
        if own_client:
            client.close()


def _export_flight(
    client: QueryClient, output: Path, run_id: str | None, fmt: str
) -> dict[str, int]:
    # Each Flight query is its own snapshot while the sink keeps committing, so posts,
    # scores and stances are cut at the newest batch stored when the export began.
    cutoff = client.sql("SELECT max(stored_at) AS t FROM scores").column("t")[0].as_py()
    counts: dict[str, int] = {}
    for table in EXPORT_QUERIES:
        sql, params = _query(table, run_id, cutoff)
        data = client.sql(sql, params or None)
        counts[table] = data.num_rows
        if data.num_rows == 0:
            continue
        ds.write_dataset(
            data,
            output / table,
            format=fmt,
            partitioning=["event_id", "run_id"],
            partitioning_flavor="hive",
            basename_template=f"data_{{i}}.{fmt}",
            existing_data_behavior="overwrite_or_ignore",
        )
    return counts


def _export_copy(client: QueryClient, output: Path, run_id: str | None, fmt: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    # Not the sandboxed read path: COPY writes files, and this SQL is the project's own.
    con = connect(client.settings.db_path, read_only=True)
    try:
        for table in EXPORT_QUERIES:
            sql, params = _query(table, run_id)
            target = str(output / table).replace("'", "''")
            count = scalar(con, f"SELECT count(*) FROM ({sql})", params)
            counts[table] = count
            if count == 0:
                continue
            con.execute(
                f"COPY ({sql}) TO '{target}' "
                f"(FORMAT {fmt}, PARTITION_BY (event_id, run_id), OVERWRITE_OR_IGNORE true)",
                params,
            )
    finally:
        con.close()
    return counts
