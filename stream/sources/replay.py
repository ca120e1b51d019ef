"""Replay an archived run through Kafka as a new run, e.g. to score it with another model.

Posts come from ``posts.raw`` (what the worker validated), in original ``event_time`` order
(ties by post id, so the order is the same every time). Each is re-sent to the ``posts``
topic with a new ``run_id`` and ``source = "replay:<RUN>"`` (the sink records the origin in
``runs.replay_of``), keyed by author id like every source, paced to keep the original gaps
divided by ``speed`` unless ``as_fast_as_possible``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from stream.config import Settings
from stream.query import QueryClient
from stream.schema import Post

log = logging.getLogger(__name__)

REPLAY_PREFIX = "replay:"


@dataclass(frozen=True)
class ReplayResult:
    run_id: str
    replay_of: str
    sent: int
    failed: int
    elapsed_s: float
    interrupted: bool = False


def replay_run_id(event_id: str, model_tag: str | None = None) -> str:
    """A new run id like any other run's (``producer.new_run_id``), marked as a replay."""
    from stream.sources.producer import new_run_id

    tag = f"-{model_tag}" if model_tag else ""
    return new_run_id(f"{event_id}-replay{tag}")[:128]


def archived_posts(
    settings: Settings, run_id: str, client: QueryClient | None = None
) -> list[Post]:
    """The stored posts of a run in replay order (event_time, then post id)."""
    own = client is None
    client = client or QueryClient(settings)
    try:
        table = client.sql(
            "SELECT raw::VARCHAR AS raw FROM posts WHERE run_id = ? ORDER BY event_time, post_id",
            [run_id],
        )
    finally:
        if own:
            client.close()
    posts = [Post.model_validate_json(raw) for raw in table.column("raw").to_pylist()]
    if not posts:
        raise LookupError(f"run {run_id!r} has no archived posts in {settings.db_path}")
    return posts


def as_replay(posts: Iterable[Post], replay_of: str, new_run_id: str) -> list[Post]:
    """Copies of ``posts`` under the new run id, marked as a replay of ``replay_of``."""
    return [
        p.model_copy(update={"run_id": new_run_id, "source": f"{REPLAY_PREFIX}{replay_of}"})
        for p in posts
    ]


def schedule(posts: list[Post], speed: float) -> list[float]:
    """Seconds after the start at which each post is sent (original gaps / speed)."""
    if speed <= 0:
        raise ValueError("speed must be > 0")
    if not posts:
        return []
    t0 = posts[0].event_time
    return [max(0.0, (p.event_time - t0).total_seconds() / speed) for p in posts]


def replay_records(posts: list[Post], speed: float, as_fast_as_possible: bool) -> list:
    """:class:`SourceRecord` objects for the shared sending layer (keys: author ids)."""
    from stream.sources import SourceRecord

    due = [0.0] * len(posts) if as_fast_as_possible else schedule(posts, speed)
    gaps = [b - a for a, b in zip([0.0, *due[:-1]], due, strict=True)]
    return [
        SourceRecord(delay_s=gap, kind="original", post=post)
        for post, gap in zip(posts, gaps, strict=True)
    ]


def replay_run(
    settings: Settings,
    run_id: str,
    *,
    speed: float = 1.0,
    as_fast_as_possible: bool = False,
    new_run_id: str | None = None,
    model_tag: str | None = None,
    progress: Callable[[Any], None] | None = None,
    client: QueryClient | None = None,
) -> ReplayResult:
    """Send the archived posts of ``run_id`` to ``settings.topic.posts`` as a new run.

    Uses the sources' sending layer (``stream.sources.producer.send_records``), so pacing,
    keys (author id), Ctrl-C handling and failure counting are the same as the simulator's.
    """
    from stream.sources.producer import send_records

    original = archived_posts(settings, run_id, client)
    new_id = new_run_id or replay_run_id(original[0].event_id, model_tag)
    if new_id == run_id:
        raise ValueError("the replay needs a run id different from the original")
    posts = as_replay(original, run_id, new_id)
    counts = send_records(
        settings,
        replay_records(posts, speed, as_fast_as_possible),
        realtime=not as_fast_as_possible,
        progress=progress,
        every_s=1.0,
    )
    log.info(
        "replayed %d posts of %s as %s in %.1fs", counts.sent, run_id, new_id, counts.elapsed_s
    )
    return ReplayResult(
        run_id=new_id,
        replay_of=run_id,
        sent=counts.sent,
        failed=counts.failed,
        elapsed_s=counts.elapsed_s,
        interrupted=counts.interrupted,
    )
