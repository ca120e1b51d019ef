"""Benchmarks that print figures (never assertions): `python -m stream.bench pipeline|model`.

``pipeline`` runs the real processes (broker, worker, sink) on loopback, sends simulated
posts either as one burst (--posts) or paced (--rate/--seconds), and reports producer
posts/s, time to the first row in DuckDB, end-to-end posts/s, latency percentiles from
Kafka append to DuckDB commit, and the peak memory of the worker and the sink.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import click
import psutil

from infra.broker import Broker
from stream import kafka
from stream.config import get_settings
from stream.events import load_event
from stream.processes import free_port, spawn
from stream.query import QueryClient
from stream.sources.producer import send_records
from stream.sources.simulator import simulate


def _rss_mb(proc: subprocess.Popen) -> float:
    try:
        return psutil.Process(proc.pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def _count(client: QueryClient) -> int:
    try:
        return client.sql("SELECT count(*) FROM scores").column(0)[0].as_py()
    except Exception:  # noqa: BLE001 - the sink may still be starting
        return 0


@click.group()
def cli() -> None:
    """swingdial benchmarks (see docs/benchmarks.md)."""


@cli.command()
@click.option("--posts", type=int, default=5000, show_default=True, help="Burst size.")
@click.option("--rate", type=float, default=None, help="Paced mode: posts per second.")
@click.option("--seconds", type=float, default=60, show_default=True, help="Paced mode length.")
@click.option("--batch-size", type=int, default=None, help="Worker batch size.")
@click.option("--keep", is_flag=True, help="Keep the temporary home (DuckDB, logs).")
def pipeline(
    posts: int, rate: float | None, seconds: float, batch_size: int | None, keep: bool
) -> None:
    """Broker + worker + sink on loopback, fed by the simulator."""
    home = Path(tempfile.mkdtemp(prefix="swingdial-bench-"))
    base = get_settings()
    settings = base.model_copy(
        update={
            "home": home,
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",
            "kafka_controller_port": free_port(),
            "query_port": free_port(),
            "worker_web_port": free_port(),
            "duckdb_path": None,
            **({"batch_size": batch_size} if batch_size else {}),
        }
    )
    broker = Broker(settings)
    broker.start()
    kafka.wait_for_broker(settings)
    kafka.ensure_topics(settings)
    worker = spawn(settings, "worker", log_path=home / "worker.log")
    sink = spawn(settings, "sink", log_path=home / "sink.log")
    client = QueryClient(settings)
    peaks = {"worker": 0.0, "sink": 0.0}
    try:
        # Warm-up: one post through the whole path so the model is loaded before timing.
        event = load_event("trump-musk-2024")
        send_records(settings, simulate(event, "bench-warmup", seed=1, speed=0, max_posts=5), False)
        while _count(client) == 0:
            time.sleep(0.2)
        warm = _count(client)

        if rate:
            posts = int(rate * seconds)
        records = [
            r
            for r in simulate(event, "bench", seed=2, speed=0, max_posts=posts * 2, rate_scale=20)
            if r.post is not None
        ]
        records = list({r.post.id: r for r in records}.values())[:posts]
        if rate:
            records = [replace(r, delay_s=1.0 / rate) for r in records]
        target = warm + len(records)
        sent_at = time.perf_counter()
        # Send on a thread so the first row is timed while a paced run is still sending.
        sending = threading.Thread(
            target=send_records, args=(settings, records), kwargs={"realtime": bool(rate)}
        )
        sending.start()
        send_s: float | None = None
        first_row_s = None
        while True:
            n = _count(client)
            now = time.perf_counter() - sent_at
            if first_row_s is None and n > warm:
                first_row_s = now
            if send_s is None and not sending.is_alive():
                send_s = now
            peaks["worker"] = max(peaks["worker"], _rss_mb(worker))
            peaks["sink"] = max(peaks["sink"], _rss_mb(sink))
            if n >= target or now > 1800:
                break
            time.sleep(0.2)
        total_s = time.perf_counter() - sent_at
        sending.join()
        send_s = send_s or total_s
        lat = client.sql(
            "SELECT quantile_cont(ms, [0.5, 0.95, 0.99]) AS q, max(ms) AS mx FROM ("
            " SELECT epoch_ms(stored_at) - epoch_ms(received_at) AS ms FROM scores"
            " WHERE run_id = 'bench')"
        ).to_pylist()[0]
        throughput = len(records) / total_s
        mode = f"paced {rate:g}/s for {seconds:g}s" if rate else "burst"
        click.echo(f"mode                      {mode}, {len(records)} posts")
        click.echo(f"producer                  {len(records) / send_s:,.0f} posts/s")
        click.echo(f"time to first row        {first_row_s:.2f} s after the first send")
        click.echo(f"end-to-end throughput     {throughput:,.1f} posts/s (Kafka->model->DuckDB)")
        p50, p95, p99 = lat["q"]
        click.echo(
            f"latency append->commit    p50 {p50:,.0f} ms  p95 {p95:,.0f} ms  "
            f"p99 {p99:,.0f} ms  max {lat['mx']:,.0f} ms"
        )
        click.echo(
            f"peak RSS                  worker {peaks['worker']:,.0f} MB, "
            f"sink {peaks['sink']:,.0f} MB"
        )
    finally:
        for proc in (worker, sink):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        broker.stop()
        if keep:
            click.echo(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


@cli.command()
@click.option("--posts", type=int, default=2048, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
def model(posts: int, batch_size: int) -> None:
    """Model-only posts/s on simulated texts (no Kafka)."""
    from models.bench import run as run_model_bench

    run_model_bench(posts=posts, batch_size=batch_size, echo=click.echo)


if __name__ == "__main__":
    cli()
