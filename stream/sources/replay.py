"""Replay an archived run through Kafka as a new run, e.g. to score it with another model.

Posts come from ``posts.raw`` (what the worker validated), in original ``event_time`` order
(ties by post id, so the order is the same every time). Each is re-sent to the ``posts``
topic with a new ``run_id`` and ``source = "replay:<RUN>"`` (the sink records the origin in
``runs.replay_of``), paced to keep the original gaps divided by ``speed`` unless
``as_fast_as_possible``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

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
    elapsed_s: float


def replay_run_id(run_id: str, model_tag: str | None = None) -> str:
    """A new, readable run id: ``<RUN>.replay[-<tag>]-<UTC timestamp>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    tag = f"-{model_tag}" if model_tag else ""
    return f"{run_id}.replay{tag}-{stamp}"[:128]


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


def replay_run(
    settings: Settings,
    run_id: str,
    *,
    speed: float = 1.0,
    as_fast_as_possible: bool = False,
    new_run_id: str | None = None,
    model_tag: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    client: QueryClient | None = None,
) -> ReplayResult:
    """Send the archived posts of ``run_id`` to ``settings.topic_posts`` as a new run."""
    from stream import kafka

    new_id = new_run_id or replay_run_id(run_id, model_tag)
    if new_id == run_id:
        raise ValueError("the replay needs a run id different from the original")
    posts = as_replay(archived_posts(settings, run_id, client), run_id, new_id)
    due = [0.0] * len(posts) if as_fast_as_possible else schedule(posts, speed)
    producer = kafka.producer(settings, client_id="swingdial-replay")
    started = time.monotonic()
    try:
        for i, (post, at) in enumerate(zip(posts, due, strict=True)):
            wait = at - (time.monotonic() - started)
            if wait > 0:
                producer.flush()
                time.sleep(wait)
            producer.send(settings.topic_posts, key=post.author.id.encode(), value=post.to_bytes())
            if progress is not None:
                progress(i + 1, len(posts))
        producer.flush()
    finally:
        producer.close()
    elapsed = time.monotonic() - started
    log.info("replayed %d posts of %s as %s in %.1fs", len(posts), run_id, new_id, elapsed)
    return ReplayResult(run_id=new_id, replay_of=run_id, sent=len(posts), elapsed_s=elapsed)
