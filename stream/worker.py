"""The scoring worker: a faust agent that turns ``posts`` into ``scores``.

Posts arrive as raw bytes so that a record which is not even JSON can still be forwarded,
untouched, to the dead-letter topic. Valid posts are scored in micro-batches (one encoder
pass per batch, in length-sorted chunks) on a thread, so the event loop keeps consuming and
heart-beating while the model works; with ``worker_overlap`` batch N+1 is scored while
batch N's outputs are still being delivered (``stream/overlap.py``). Offsets are
acknowledged only after every output of a batch is delivered, in batch order: a worker
killed mid-batch re-scores that batch on restart (at-least-once), and the sink stores each
post once (it keys on run id + post id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import faust

from models.scorer import DEFAULT_TOPICS, Scorer, event_topics, load_scorer
from stream.batch import (
    BatchOutput,
    InRecord,
    apply_history,
    score_batch,
)
from stream.config import Settings, secret
from stream.events import load_event
from stream.kafka import topic_configs
from stream.listeners import require_loopback
from stream.overlap import Overlap
from stream.schema import Post

# Exit status when a batch failed as a whole and was not acknowledged (restart re-reads it).
EXIT_BATCH_FAILED = 70

log = logging.getLogger(__name__)

HistoryWrite = tuple[str, int, dict[str, Any] | None]  # changelog key, partition, value


def _credentials(settings: Settings) -> Any:
    """faust's form of the SASL/SSL settings shared with kafka-python clients."""
    ssl_context = None
    if settings.kafka_ssl_cafile or settings.kafka_security_protocol.endswith("SSL"):
        ssl_context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=secret(settings.kafka_sasl_password),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    return ssl_context


class EventAwareScorer:
    """Scores each post against its own event's topic list (from ``stream/events``).

    Switching topics clears the scorer's cache, so consecutive posts of one event (the
    usual case: one live event at a time) keep the cache warm.
    """

    def __init__(self, scorer: Scorer, events_dir: Path | None = None) -> None:
        self.scorer = scorer
        self.version = scorer.version
        self.events_dir = events_dir
        self._event_id: str | None = None
        self._topics: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()

    def topics_for(self, event_id: str) -> list[tuple[str, str]]:
        """The event file's topics; the default list for an unknown or unreadable event."""
        if event_id not in self._topics:
            try:
                topics = event_topics(load_event(event_id, self.events_dir).topics)
            except FileNotFoundError:
                topics = list(DEFAULT_TOPICS)
            except Exception as exc:  # noqa: BLE001 - a broken event file must not stop scoring
                log.warning("event file for %r unreadable, default topics: %s", event_id, exc)
                topics = list(DEFAULT_TOPICS)
            self._topics[event_id] = topics
            while len(self._topics) > 64:  # event ids come from producers: keep few
                self._topics.popitem(last=False)
        return self._topics[event_id]

    def _use_event(self, event_id: str) -> None:
        if event_id == self._event_id:
            return
        self.scorer.set_topics(self.topics_for(event_id))
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


def load(settings: Settings) -> EventAwareScorer:
    """The model the settings name (or the benchmark's stub), wrapped per event."""
    if settings.score_stub:
        from stream.testing import StubModel

        return EventAwareScorer(StubModel(settings.targets), settings.events_dir)  # type: ignore[arg-type]
    return EventAwareScorer(load_scorer(settings, targets=settings.targets), settings.events_dir)


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
        producer_max_request_size=settings.kafka_max_message_bytes,
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
                    state["scorer"] = await loop.run_in_executor(executor, load, settings)
                    log.info("model %s loaded", state["scorer"].version)
        return state["scorer"]

    @app.task
    async def warm_up() -> None:
        # Load the model before the first batch so the first posts are not late. A model
        # that cannot load fails the first batch instead (retried, then exit non-zero).
        try:
            await ready_scorer()
        except Exception as exc:  # noqa: BLE001
            log.error("model failed to load: %r", exc)

    async def deliver(payload: tuple[BatchOutput, list[HistoryWrite]]) -> None:
        """Send every output of a batch and return once Kafka has them all. The history
        writes are awaited with the scores, so the inputs are acked only once the history
        they produced is in the changelog."""
        output, history_writes = payload
        deliveries = [
            await dlq.send(key=d.key, value=d.value, headers=list(d.headers), force=True)
            for d in output.dead_letters
        ]
        for key, partition, value in history_writes:
            # The post's partition (take_events has no single current event).
            deliveries.append(author_history.send_changelog(partition, key, value))
        for record in output.scores:
            deliveries.append(await scores.send(key=record.key, value=record.value, force=True))
        await asyncio.gather(*deliveries)

    def score(records: Sequence[InRecord]) -> BatchOutput:
        active = state["scorer"]
        return score_batch(
            records,
            active.score_posts,
            author_history.data,
            version=active.version,
            min_posts=settings.cohort_min_posts,
            max_bytes=settings.kafka_max_message_bytes,
        )

    def prepare(output: BatchOutput) -> tuple[BatchOutput, list[HistoryWrite]]:
        # On the loop, before the next batch is scored: it must read these updates.
        writes = apply_history(
            author_history.data, output.history, settings.worker_history_max_authors
        )
        return output, writes

    def ack(events: Sequence[Any]) -> None:
        for event in events:
            event.ack()  # the reference held in score_posts: now faust may commit it

    async def loaded() -> None:
        await ready_scorer()

    pipeline: Overlap[InRecord, BatchOutput, tuple[BatchOutput, list[HistoryWrite]]] = Overlap(
        score=score,
        prepare=prepare,
        deliver=deliver,
        ack=ack,
        give_up=exit_without_ack,
        executor=executor,
        retries=settings.worker_batch_retries,
        before_score=loaded,
    )

    @app.agent(posts, concurrency=1)
    async def score_posts(stream: faust.StreamT) -> None:
        try:
            async for events in stream.take_events(
                settings.batch_size, within=settings.batch_within_s
            ):
                started = time.perf_counter()
                # take_events acks the batch when it fetches the next one, which with the
                # overlap is before this batch is delivered: one more reference per message
                # keeps it uncommitted until ack() above, after delivery.
                for event in events:
                    event.message.incref()
                records = [in_record(event.message) for event in events]
                output = await pipeline.submit(records, events)
                if not settings.worker_overlap:
                    await pipeline.drain()
                log.debug(
                    "batch of %d (%d scored, %d dead-lettered) in %.0f ms",
                    len(records),
                    len(output.scores),
                    len(output.dead_letters),
                    (time.perf_counter() - started) * 1000,
                )
        finally:
            # A clean stop delivers and acks the batch in flight (a crash re-reads it).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(pipeline.drain()), 30)

    return app


def in_record(message: Any) -> InRecord:
    return InRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp=message.timestamp,
    )


def exit_without_ack(records: Sequence[InRecord], exc: BaseException) -> NoReturn:
    """Stop the process at once: faust's ``take_events`` would ack the batch on the way out.

    Nothing of this batch is acknowledged, so its offsets are never committed and a
    restarted worker reads it again.
    """
    first = min(records, key=lambda r: (r.partition, r.offset))
    log.critical(
        "batch of %d posts (from %s[%d]@%d) failed after retries: %r; exiting with status %d "
        "without acknowledging it, a restarted worker reads it again",
        len(records),
        first.topic,
        first.partition,
        first.offset,
        exc,
        EXIT_BATCH_FAILED,
    )
    logging.shutdown()
    os._exit(EXIT_BATCH_FAILED)


def plain_logging(loglevel: str) -> dict[str, Any]:
    """faust's logging, without colour codes (logs go to files) and without the Kafka
    clients' per-request chatter below WARNING."""
    return {
        "merge": True,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "level": loglevel.upper(),
            }
        },
        "loggers": {name: {"level": "WARNING"} for name in ("aiokafka", "kafka")},
    }


def run_worker(settings: Settings, loglevel: str = "warning") -> None:
    """Run the worker until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the worker's log
    hf_logging.set_verbosity_error()
    app = create_app(settings)
    worker = faust.Worker(
        app, loglevel=loglevel, quiet=True, logging_config=plain_logging(loglevel)
    )
    worker.execute_from_commandline()
