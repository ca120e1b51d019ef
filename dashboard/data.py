"""How the dashboard reaches data (read-only) and Kafka (annotations).

Reads go through :class:`stream.query.QueryClient` (Flight to the sink while it writes, the
file read-only otherwise); the dashboard never opens DuckDB for writing. Annotations are
produced to Kafka and come back through the sink like every other input.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from dashboard.queries import Query
from stream.config import Settings
from stream.schema import Annotation

KAFKA_TIMEOUT_S = 4.0  # an analyst waits this long at most for "saved" / "Kafka unreachable"


@dataclass
class Source:
    """A ready :data:`Query`, or the reason there is nothing to read yet."""

    query: Query | None
    problem: str | None = None
    route: str | None = None


def open_source(settings: Settings) -> Source:
    """Connect the read path; explain (without raising) when the database is not there yet."""
    from stream.query import DatabaseLockedError, QueryClient, QueryError

    client = QueryClient(settings)
    if client.server_info() is None and not settings.db_path.exists():
        return Source(None, f"No database yet at `{settings.db_path}`.")

    def query(sql: str, params: list | None = None):  # noqa: ANN202 - pyarrow.Table
        return client.sql(sql, params)

    try:
        query("SELECT count(*) AS n FROM runs", None)
    except DatabaseLockedError as exc:
        return Source(None, str(exc))
    except (QueryError, OSError) as exc:
        return Source(None, f"The database at `{settings.db_path}` is not readable yet: {exc}")
    return Source(query, None, client.last_route)


def produce_annotation(
    settings: Settings,
    *,
    text: str,
    at: datetime,
    author: str,
    run_id: str | None,
    event_id: str | None,
) -> Annotation:
    """Send one :class:`Annotation` to ``settings.topic.annotations``; raises if Kafka fails."""
    from stream.kafka import producer

    note = Annotation(
        id=f"ann-{uuid.uuid4().hex[:12]}",
        event_id=event_id,
        run_id=run_id,
        at=at,
        text=text,
        author=author or "analyst",
        created_at=datetime.now(UTC),
    )
    timeout_ms = int(KAFKA_TIMEOUT_S * 1000)
    client = producer(
        settings,
        bootstrap_timeout_ms=timeout_ms,
        max_block_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
        delivery_timeout_ms=timeout_ms + 1000,
    )
    try:
        future = client.send(
            settings.topic.annotations,
            key=note.id.encode(),
            value=note.model_dump_json().encode(),
        )
        future.get(timeout=KAFKA_TIMEOUT_S + 1)
    finally:
        client.close(timeout=1)
    return note
