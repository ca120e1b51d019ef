"""Benchmarks that print figures (never assertions): ``swingdial bench pipeline|model``.

:func:`run_pipeline` runs the real processes (broker, worker, sink) on loopback, sends
simulated posts either as one burst or paced at a fixed offered rate, and measures producer
posts/s, time to the first row in DuckDB, end-to-end posts/s, latency percentiles from Kafka
append to DuckDB commit, and the memory of the worker and the sink (sampled as rows land,
so a long run shows whether it levels off). ``stub=True`` replaces the model by a
fixed-output stub: the pipeline's ceiling without the model. A per-message baseline
(``batch_size=1``) can be measured in the same run, on the same broker. ``workers`` runs
that many worker processes in one consumer group (``threads`` model threads each), to
compare layouts on the same cores.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from stream import kafka
from stream.config import Settings
from stream.events import load_event
from stream.processes import free_port, isolated, running_broker, spawn
from stream.query import QueryClient
from stream.sources.producer import send_records
from stream.sources.simulator import simulate


@dataclass
class PipelineResult:
    label: str
    posts: int
    batch_size: int
    stub_model: bool
    offered_rate: float | None  # None: one burst
    producer_posts_per_s: float
    first_row_s: float | None
    end_to_end_posts_per_s: float
    latency_ms: dict[str, float]  # p50 / p95 / p99 / max, Kafka append -> DuckDB commit
    peak_rss_mb: dict[str, float]
    rss_samples: list[dict[str, float]] = field(default_factory=list)  # stored, worker, sink
    workers: int = 1  # worker processes (one consumer group); RSS "worker" is their sum
    threads: int = 0  # model threads per worker (0: the runtime's default, all cores)
    chunk_size: int = 32
    overlap: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rss_mb(proc: subprocess.Popen) -> float:
    try:
        return psutil.Process(proc.pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def count_stored(client: QueryClient, run_id: str) -> int:
    """Posts of ``run_id`` in DuckDB so far (0 while the sink is still starting)."""
    try:
        table = client.sql("SELECT count(*) FROM scores WHERE run_id = ?", [run_id])
        return int(table.column(0)[0].as_py())
    except Exception:  # noqa: BLE001 - the sink may still be starting
        return 0


@contextmanager
def private_broker(base: Settings) -> Iterator[Settings]:
    """A fresh broker on free loopback ports, with its own home (removed afterwards)."""
    home = Path(tempfile.mkdtemp(prefix="swingdial-bench-"))
    settings = base.model_copy(
        update={
            "home": home,
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",
            "kafka_controller_port": free_port(),
            "duckdb_path": None,
        }
    )
    try:
        with running_broker(settings):
            yield settings
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def running_pipeline(
    broker_settings: Settings, tag: str, workers: int = 1, **overrides: Any
) -> Iterator[tuple[Settings, QueryClient, dict[str, subprocess.Popen]]]:
    """Worker(s) and sink of ``tag``'s own (topics, groups, home) on a running broker;
    the processes are named worker, worker-1, ... and sink."""
    home = broker_settings.home / tag
    settings = isolated(broker_settings, tag, home).replace(**overrides)
    home.mkdir(parents=True, exist_ok=True)
    kafka.ensure_topics(settings)
    procs = {
        f"worker{f'-{i}' if i else ''}": spawn(
            settings, "worker", log_path=home / f"worker{f'-{i}' if i else ''}.log"
        )
        for i in range(workers)
    }
    procs["sink"] = spawn(settings, "sink", log_path=home / "sink.log")
    client = QueryClient(settings)
    try:
        yield settings, client, procs
    finally:
        client.close()
        _stop(*procs.values())


def group_members(settings: Settings) -> int:
    """Members of the workers' consumer group once it is stable (0 while it rebalances)."""
    # kafka-python cannot decode faust's assignor metadata and warns per member: not needed.
    logging.getLogger("kafka.admin").setLevel(logging.ERROR)
    admin = kafka.admin(settings)
    try:
        group = admin.describe_groups([settings.worker.app_id])[settings.worker.app_id]
    except Exception:  # noqa: BLE001 - the group may not exist yet
        return 0
    finally:
        admin.close()
    state = str(group.get("group_state") or group.get("state") or "")
    return len(group.get("members") or []) if state.lower() == "stable" else 0


def warm_up(settings: Settings, client: QueryClient, workers: int) -> None:
    """Every worker in the group and its model loaded before timing: wait for a stable
    group of ``workers`` members, then put posts on every partition and wait for them."""
    deadline = time.monotonic() + 600
    while group_members(settings) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workers} workers did not join {settings.worker.app_id}")
        time.sleep(0.5)
    event = load_event("trump-musk-2024")
    warm = [
        r
        for r in simulate(event, "warmup", seed=1, speed=0, max_posts=4 * settings.kafka.partitions)
        if r.post is not None
    ]
    producer = kafka.producer(settings)
    try:
        for i, record in enumerate(warm):
            producer.send(
                settings.topic.posts,
                key=record.key,
                value=record.value,
                partition=i % settings.kafka.partitions,
            )
        producer.flush()
    finally:
        producer.close()
    while count_stored(client, "warmup") < len({r.post.id for r in warm if r.post}):
        if time.monotonic() > deadline:
            raise TimeoutError("the warm-up posts were not all stored")
        time.sleep(0.2)


def run_pipeline(
    broker_settings: Settings,
    *,
    posts: int,
    label: str = "pipeline",
    rate: float | None = None,
    batch_size: int | None = None,
    stub: bool = False,
    workers: int = 1,
    threads: int | None = None,
    chunk_size: int | None = None,
    overlap: bool | None = None,
    sample_every: int = 0,
    echo: Callable[[str], None] = lambda _: None,
) -> PipelineResult:
    """One measured run: its own topics, worker(s) and sink on the given broker. Unset
    options keep the broker settings' values (so ``SWINGDIAL_*`` variables apply)."""
    tag = f"{label}-{int(time.time() * 1000) % 10**8}"
    overrides: dict[str, Any] = {"score_stub": stub}
    for name, value in (
        ("worker_batch_size", batch_size),
        ("score_threads", threads),
        ("score_chunk_size", chunk_size),
        ("worker_overlap", overlap),
    ):
        if value is not None:
            overrides[name] = value
    peaks = {"worker": 0.0, "sink": 0.0}
    samples: list[dict[str, float]] = []
    with running_pipeline(broker_settings, tag, workers, **overrides) as (
        settings,
        client,
        procs,
    ):
        worker_procs = [p for name, p in procs.items() if name.startswith("worker")]
        sink = procs["sink"]
        warm_up(settings, client, workers)
        event = load_event("trump-musk-2024")
        records = [
            r
            for r in simulate(event, tag, seed=2, speed=0, max_posts=posts * 2, rate_scale=20)
            if r.post is not None
        ]
        records = list({r.post.id: r for r in records if r.post}.values())[:posts]
        if len(records) < posts:  # the event script has fewer distinct posts: repeat them
            more = [
                replace(r, post=r.post.model_copy(update={"id": f"{r.post.id}-{k}"}))
                for k in range(1, posts // max(1, len(records)) + 1)
                for r in records
                if r.post is not None
            ]
            records = (records + more)[:posts]
        if rate:
            records = [replace(r, delay_s=1.0 / rate) for r in records]
        sent_at = time.perf_counter()
        # Send on a thread so the first row is timed while a paced run is still sending.
        sending = threading.Thread(
            target=send_records, args=(settings, records), kwargs={"realtime": bool(rate)}
        )
        sending.start()
        send_s: float | None = None
        first_row_s = None
        next_sample = sample_every
        while True:
            n = count_stored(client, tag)
            now = time.perf_counter() - sent_at
            if first_row_s is None and n > 0:
                first_row_s = now
            if send_s is None and not sending.is_alive():
                send_s = now
            rss = {"worker": sum(_rss_mb(w) for w in worker_procs), "sink": _rss_mb(sink)}
            peaks = {k: max(peaks[k], v) for k, v in rss.items()}
            if sample_every and n >= next_sample:
                samples.append({"stored": float(n), **rss})
                echo(
                    f"  {n:>9,} stored  worker {rss['worker']:,.0f} MB  sink {rss['sink']:,.0f} MB"
                )
                next_sample = (n // sample_every + 1) * sample_every
            if n >= len(records) or now > 3600:
                break
            time.sleep(0.2)
        total_s = time.perf_counter() - sent_at
        sending.join()
        send_s = send_s or total_s
        lat = client.sql(
            "SELECT quantile_cont(ms, [0.5, 0.95, 0.99]) AS q, max(ms) AS mx FROM ("
            " SELECT epoch_ms(stored_at) - epoch_ms(received_at) AS ms FROM scores"
            " WHERE run_id = ?)",
            [tag],
        ).to_pylist()[0]
        p50, p95, p99 = lat["q"]
        return PipelineResult(
            label=label,
            posts=len(records),
            batch_size=settings.worker.batch_size,
            stub_model=stub,
            offered_rate=rate,
            producer_posts_per_s=len(records) / send_s,
            first_row_s=first_row_s,
            end_to_end_posts_per_s=len(records) / total_s,
            latency_ms={"p50": p50, "p95": p95, "p99": p99, "max": lat["mx"]},
            peak_rss_mb=peaks,
            rss_samples=samples,
            workers=workers,
            threads=settings.score.threads,
            chunk_size=settings.score.chunk_size,
            overlap=settings.worker.overlap,
        )


def format_result(r: PipelineResult) -> str:
    mode = f"paced {r.offered_rate:g}/s" if r.offered_rate else "burst"
    model = "stub model" if r.stub_model else "model"
    first = f"{r.first_row_s:.2f} s" if r.first_row_s is not None else "-"
    lat = r.latency_ms
    layout = f"{r.workers} worker(s) x {r.threads or 'default'} thread(s)"
    overlap = "overlap" if r.overlap else "no overlap"
    return "\n".join(
        [
            f"{r.label}: {mode}, {r.posts:,} posts, batch {r.batch_size}, chunk "
            f"{r.chunk_size}, {overlap}, {layout}, {model}",
            f"  producer              {r.producer_posts_per_s:,.0f} posts/s",
            f"  time to first row     {first}",
            f"  end-to-end            {r.end_to_end_posts_per_s:,.1f} posts/s",
            f"  latency append->commit p50 {lat['p50']:,.0f} ms  p95 {lat['p95']:,.0f} ms  "
            f"p99 {lat['p99']:,.0f} ms  max {lat['max']:,.0f} ms",
            f"  peak RSS              worker {r.peak_rss_mb['worker']:,.0f} MB, "
            f"sink {r.peak_rss_mb['sink']:,.0f} MB",
        ]
    )
