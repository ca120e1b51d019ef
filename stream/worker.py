"""The scoring worker: a faust agent that turns ``posts`` into ``scores``.

Posts arrive as raw bytes so that a record which is not even JSON can still be forwarded,
untouched, to the dead-letter topic. Valid posts are scored in micro-batches (one encoder
pass per batch) on a thread, so the event loop keeps consuming and heart-beating while the
model works. Offsets are acknowledged only after every output of a batch is delivered:
a worker killed mid-batch re-scores that batch on restart (at-least-once), and the sink
stores each post once (it keys on run id + post id).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import faust

from models.cohort import CohortHistory, cohort_from_bio, decide
from models.scorer import DEFAULT_TOPICS, Scorer, event_topics, load_scorer
from stream.config import Settings
from stream.events import load_event
from stream.kafka import topic_configs
from stream.listeners import require_loopback
from stream.schema import CohortCall, InvalidPost, LabelScores, Post, ScoredPost, parse_post

log = logging.getLogger(__name__)


def _credentials(settings: Settings) -> Any:
    """faust's form of the SASL/SSL settings shared with kafka-python clients."""
    ssl_context = None
    if settings.kafka_ssl_cafile or settings.kafka_security_protocol.endswith("SSL"):
        ssl_context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    return ssl_context


def cohort_call(
    post: Post,
    output: dict[str, Any],
    stored: dict[str, Any] | None,
    offset: int,
    min_posts: int,
) -> tuple[CohortCall, dict[str, Any] | None]:
    """The author's cohort from their bio and stance history, and the history to store.

    ``stored`` is the author's table value: the history plus the ``posts`` offset of the
    last post counted in it. A post at or before that offset is being re-scored after a
    crash (its batch was not acked but its history update was), so it is not counted
    twice; the returned value is then ``None`` (nothing to write).
    """
    history = CohortHistory.from_dict(stored)
    fresh = stored is None or offset > int(stored.get("offset", -1))
    if fresh:
        history.add(output["stance"])
    label, evidence = decide(cohort_from_bio(post.author.bio), history, min_posts=min_posts)
    value = history.to_dict() | {"offset": offset} if fresh else None
    return CohortCall(label=label, evidence=evidence), value


def build_scored(
    post: Post,
    output: dict[str, Any],
    version: str,
    received_at: datetime | None,
    cohort: CohortCall,
) -> ScoredPost:
    """Assemble the record for the ``scores`` topic from a post and its model output."""
    return ScoredPost(
        post=post,
        sentiment=LabelScores(**output["sentiment"]),
        stance={target: LabelScores(**value) for target, value in output["stance"].items()},
        emotion=LabelScores(**output["emotion"]) if output.get("emotion") else None,
        topic=LabelScores(**output["topic"]) if output.get("topic") else None,
        cohort=cohort,
        model_version=version,
        scored_at=datetime.now(UTC),
        received_at=received_at,
    )


class EventAwareScorer:
    """Scores each post against its own event's topic list (from ``stream/events``).

    Switching topics clears the scorer's cache, so consecutive posts of one event (the
    usual case: one live event at a time) keep the cache warm.
    """

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.version = scorer.version
        self._event_id: str | None = None

    def _use_event(self, event_id: str) -> None:
        if event_id == self._event_id:
            return
        try:
            topics = event_topics(load_event(event_id).topics)
        except FileNotFoundError:
            topics = list(DEFAULT_TOPICS)
        self.scorer.set_topics(topics)
        self._event_id = event_id

    def score_posts(self, posts: list[Post]) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any] | None] = [None] * len(posts)
        by_event: dict[str, list[int]] = {}
        for index, post in enumerate(posts):
            by_event.setdefault(post.event_id, []).append(index)
        for event_id, indexes in by_event.items():
            self._use_event(event_id)
            for index, output in zip(
                indexes, self.scorer.score_texts([posts[i].text for i in indexes]), strict=True
            ):
                outputs[index] = output
        return outputs  # type: ignore[return-value]


def create_app(settings: Settings, scorer: EventAwareScorer | None = None) -> faust.App:
    """Build the faust app; the scorer loads lazily so ``--help`` stays fast."""
    settings.faust_dir.mkdir(parents=True, exist_ok=True)
    if settings.worker_web_enabled:
        require_loopback(settings.worker_web_host, "the worker's web server", settings)
    app = faust.App(
        settings.worker_app_id,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers()],
        broker_credentials=_credentials(settings),
        store="memory://",
        datadir=str(settings.faust_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # Off by default: faust's web server serves the tables (author history) to anyone
        # on the machine.
        web_enabled=settings.worker_web_enabled,
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_host,
        producer_acks=-1,
        broker_session_timeout=settings.worker_session_timeout_s,
        # Dynamic membership by default: a worker stopped cleanly sends LeaveGroup, so its
        # partitions move at once. Static membership (opt-in) spares a crashed worker's
        # restart a rebalance, but a stopped worker then holds its partitions for the whole
        # session timeout. See docs/operations.md, "Scale out and in".
        consumer_group_instance_id=settings.worker_instance_id,
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout_s / 3),
    )
    posts = app.topic(settings.topic_posts, key_serializer="raw", value_serializer="raw")
    scores = app.topic(settings.topic_scores, key_serializer="raw", value_serializer="raw")
    dlq = app.topic(settings.topic_dlq, key_serializer="raw", value_serializer="raw")
    # Each author's stance history, so a quiet bio can still be placed by what they post.
    # Sources key posts by author id, so an author's posts and history share a partition
    # (and a worker); the changelog topic makes the history survive restarts.
    author_history = app.Table(
        "author-history",
        default=None,
        partitions=settings.partitions,
        extra_topic_configs=topic_configs(settings),
    )

    @app.on_rebalance_complete.connect
    async def hold_agents_until_seeked(sender: Any, **kwargs: Any) -> None:
        # After recovering the table, faust seeks the posts partitions and then resumes
        # flow control, which clears the agents' queues: posts fetched during the seek
        # were dropped although the consumer had read past them (restarted workers
        # stalled, or skipped posts). Suspending here, just before that resume and seek,
        # keeps fetched posts in the conductor until after the clear. Not
        # consumer.stop_flow(): faust then drops records already taken from aiokafka.
        # Details and measurements: docs/architecture.md, "Author history".
        app.flow_control.suspend()

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")
    state: dict[str, Any] = {"scorer": scorer, "lock": None}

    async def ready_scorer() -> EventAwareScorer:
        """Load the model once, on the scorer thread; every caller awaits the same load."""
        if state["scorer"] is None:
            if state["lock"] is None:
                state["lock"] = asyncio.Lock()
            async with state["lock"]:
                if state["scorer"] is None:
                    loop = asyncio.get_running_loop()
                    state["scorer"] = await loop.run_in_executor(
                        executor,
                        lambda: EventAwareScorer(load_scorer(settings, targets=settings.targets)),
                    )
                    log.info("model %s loaded", state["scorer"].version)
        return state["scorer"]

    @app.task
    async def warm_up() -> None:
        # Load the model before the first batch so the first posts are not late.
        await ready_scorer()

    @app.agent(posts, concurrency=1)
    async def score_posts(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            started = time.perf_counter()
            valid: list[tuple[Post, datetime | None, int, int]] = []
            deliveries = []
            for event in events:
                message = event.message
                raw: bytes = message.value if message.value is not None else b""
                try:
                    post = parse_post(raw)
                except InvalidPost as exc:
                    headers = [
                        ("reason", exc.reason.encode()),
                        ("source_topic", message.topic.encode()),
                        ("source_partition", str(message.partition).encode()),
                        ("source_offset", str(message.offset).encode()),
                    ]
                    deliveries.append(
                        await dlq.send(key=message.key, value=raw, headers=headers, force=True)
                    )
                    continue
                sent_at = (
                    datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else None
                )
                valid.append((post, sent_at, message.partition, message.offset))
            if valid:
                active = await ready_scorer()
                outputs = await loop.run_in_executor(
                    executor, active.score_posts, [post for post, *_ in valid]
                )
                for (post, sent_at, partition, offset), output in zip(valid, outputs, strict=True):
                    cohort, value = cohort_call(
                        post,
                        output,
                        author_history.data.get(post.author.id),
                        offset,
                        settings.cohort_min_posts,
                    )
                    if value is not None:
                        # Written with the post's partition (take_events has no single
                        # current event) and awaited with the scores, so the inputs are
                        # acked only once the history they produced is in the changelog.
                        author_history.data[post.author.id] = value
                        deliveries.append(
                            author_history.send_changelog(partition, post.author.id, value)
                        )
                    record = build_scored(post, output, active.version, sent_at, cohort)
                    deliveries.append(
                        await scores.send(key=post.id.encode(), value=record.to_bytes(), force=True)
                    )
            # Wait until Kafka has every output (and history update) before take_events
            # acks the inputs.
            await asyncio.gather(*deliveries)
            log.debug(
                "batch of %d (%d valid) in %.0f ms",
                len(events),
                len(valid),
                (time.perf_counter() - started) * 1000,
            )

    return app


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Run the worker until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
