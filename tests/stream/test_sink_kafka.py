"""The sink against a real Kafka broker (the `kafka_settings` fixture from conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream import kafka
from stream.config import Settings
from stream.query import QueryClient
from stream.schema import Post, ScoredPost
from tests.factories import annotation, scored_post

pytestmark = pytest.mark.integration


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWINGDIAL_")}
    env.update(settings.to_env())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _start_sink(settings: Settings, log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from stream.cli import main; main()", "sink", *args],
        env=_env(settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def _wait(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 - server may still be starting
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _produce(settings: Settings, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = kafka.producer(settings)
    try:
        for key, value in values:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def _scored(items: list[ScoredPost]) -> list[tuple[bytes, bytes]]:
    return [(s.post.id.encode(), s.to_bytes()) for s in items]


def _count(settings: Settings, sql: str, params: list | None = None) -> int:
    with QueryClient(settings) as client:
        return client.sql(sql, params).column(0)[0].as_py()


@pytest.fixture
def sink_log(kafka_settings: Settings) -> Iterator[Path]:
    log = kafka_settings.home / "sink.log"
    yield log
    if log.exists():
        sys.stderr.write(log.read_text()[-4000:])


def test_sink_stores_each_post_once_across_redelivery_and_restart(
    kafka_settings: Settings, sink_log: Path
) -> None:
    settings = kafka_settings.replace(**{"sink_batch_size": 50, "sink_flush_s": 0.2})
    first = [scored_post(i, "k-run") for i in range(120)]
    _produce(settings, settings.topic.scores, _scored(first))
    _produce(settings, settings.topic.scores, [(b"bad", b"{definitely not json")])
    note = annotation(1, "k-run")
    _produce(
        settings, settings.topic.annotations, [(note.id.encode(), note.model_dump_json().encode())]
    )

    proc = _start_sink(settings, sink_log)
    try:
        _wait(lambda: _count(settings, "SELECT count(*) FROM posts") == 120, 90, "120 posts")
        with QueryClient(settings) as client:
            client.sql("SELECT 1")
            assert client.last_route == "flight"  # the running sink serves the read
        # Re-sent posts (same ids, new offsets) plus new ones.
        second = [scored_post(i, "k-run") for i in range(100, 160)]
        _produce(settings, settings.topic.scores, _scored(second))
        _wait(lambda: _count(settings, "SELECT count(*) FROM posts") == 160, 60, "160 posts")
        _wait(
            lambda: (
                _count(
                    settings,
                    "SELECT sum(next_offset) FROM kafka_offsets WHERE topic = ?",
                    [settings.topic.scores],
                )
                == 181
            ),
            60,
            "offsets past every record",
        )
    finally:
        assert _stop(proc) == 0

    with QueryClient(settings) as client:
        assert client.sql("SELECT count(*) FROM scores").column(0)[0].as_py() == 160
        assert client.sql("SELECT count(*) FROM stances").column(0)[0].as_py() == 320
        assert client.sql("SELECT count(*) FROM annotations").column(0)[0].as_py() == 1
        assert client.sql("SELECT count(*) FROM sink_rejects").column(0)[0].as_py() == 1
        stats = client.sql("SELECT records, rows_written, duplicates FROM sink_stats").to_pylist()
        assert stats == [{"records": 182, "rows_written": 160, "duplicates": 20}]
        assert client.last_route == "direct"

    # Restart: the sink resumes from the offsets in DuckDB, reading nothing twice.
    proc = _start_sink(settings, sink_log)
    try:
        third = [scored_post(i, "k-run") for i in range(160, 170)]
        _produce(settings, settings.topic.scores, _scored(third))
        _wait(lambda: _count(settings, "SELECT count(*) FROM posts") == 170, 90, "170 posts")
        assert _count(settings, "SELECT records FROM sink_stats") == 192
    finally:
        assert _stop(proc) == 0


def test_annotate_and_replay_through_kafka(kafka_settings: Settings, sink_log: Path) -> None:
    from click.testing import CliRunner

    from stream.cli import main
    from stream.config import get_settings
    from stream.sources.replay import replay_run

    settings = kafka_settings.replace(**{"sink_flush_s": 0.2})
    original = [scored_post(i, "orig-run") for i in range(40)]
    _produce(settings, settings.topic.scores, _scored(original))
    proc = _start_sink(settings, sink_log)
    try:
        _wait(lambda: _count(settings, "SELECT count(*) FROM posts") == 40, 90, "40 posts")

        # annotate -> annotations topic -> sink -> DuckDB
        env = _env(settings)
        old = {k: os.environ.get(k) for k in env if k.startswith("SWINGDIAL_")}
        os.environ.update({k: v for k, v in env.items() if k.startswith("SWINGDIAL_")})
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(
                main,
                [
                    "annotate",
                    "the big moment",
                    "--at",
                    "2024-08-13T00:05:00Z",
                    "--run-id",
                    "orig-run",
                ],
            )
            by_minute = CliRunner().invoke(
                main, ["annotate", "minute note", "--minute", "45", "--event", "trump-musk-2024"]
            )
            latest = CliRunner().invoke(main, ["annotate", "latest note", "--run-id", "orig-run"])
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        _wait(
            lambda: (
                _count(
                    settings, "SELECT count(*) FROM annotations WHERE text = ?", ["the big moment"]
                )
                == 1
            ),
            60,
            "annotation stored",
        )
        assert by_minute.exit_code == 0 and latest.exit_code == 0, by_minute.output
        _wait(lambda: _count(settings, "SELECT count(*) FROM annotations") == 3, 60, "3 notes")
        with QueryClient(settings) as client:
            notes = {
                r["text"]: r
                for r in client.sql(
                    "SELECT text, event_id, run_id, strftime(at_time, '%Y-%m-%dT%H:%M:%S') AS at "
                    "FROM annotations"
                ).to_pylist()
            }
            newest = client.sql(
                "SELECT strftime(max(event_time), '%Y-%m-%dT%H:%M:%S') AS t FROM posts"
            ).to_pylist()[0]["t"]
        # --run-id finds the event; --minute counts from the event file's start;
        # no time at all pins the note to the newest stored post of the run.
        assert notes["the big moment"]["event_id"] == "test-event"
        assert notes["minute note"]["at"] == "2024-08-13T00:45:00"
        assert notes["latest note"]["at"] == newest

        # replay reads the archive over Flight (the sink holds the file) and re-sends
        consumer = kafka.consumer(
            settings, settings.topic.posts, group_id=None, consumer_timeout_ms=10_000
        )
        result_replay = replay_run(
            settings, "orig-run", as_fast_as_possible=True, new_run_id="orig-run.r2"
        )
        assert result_replay.sent == 40
        sent: list[Post] = []
        for message in consumer:
            sent.append(Post.model_validate_json(message.value))
            if len(sent) == 40:
                break
        consumer.close()
        assert {p.run_id for p in sent} == {"orig-run.r2"}
        assert {p.source for p in sent} == {"replay:orig-run"}
        by_partition: dict[str, list[Post]] = {}
        assert sorted(p.id for p in sent) == sorted(s.post.id for s in original)
        del by_partition

        # Stand-in for the worker: score the replayed posts identically.
        by_id = {s.post.id: s for s in original}
        rescored = [by_id[p.id].model_copy(update={"post": p}) for p in sent]
        _produce(settings, settings.topic.scores, _scored(rescored))
        _wait(
            lambda: (
                _count(settings, "SELECT count(*) FROM posts WHERE run_id = 'orig-run.r2'") == 40
            ),
            60,
            "replayed run stored",
        )
        with QueryClient(settings) as client:
            runs = client.sql("SELECT replay_of FROM runs WHERE run_id = 'orig-run.r2'")
            assert runs.to_pylist() == [{"replay_of": "orig-run"}]
            cols = "minute, cohort, posts, round(net_sentiment, 6) AS n"
            a = client.sql(
                f"SELECT {cols} FROM v_minute_cohort WHERE run_id = 'orig-run' ORDER BY ALL"
            ).to_pylist()
            b = client.sql(
                f"SELECT {cols} FROM v_minute_cohort WHERE run_id = 'orig-run.r2' ORDER BY ALL"
            ).to_pylist()
            assert a == b
    finally:
        assert _stop(proc) == 0


def test_no_serve_sink_gives_clear_lock_error(kafka_settings: Settings, sink_log: Path) -> None:
    from stream.query import DatabaseLockedError

    settings = kafka_settings.replace(**{"sink_flush_s": 0.2})
    _produce(settings, settings.topic.scores, _scored([scored_post(i, "ns") for i in range(5)]))
    proc = _start_sink(settings, sink_log, "--no-serve")
    try:
        _wait(lambda: settings.db_path.exists(), 60, "database file")
        time.sleep(1.0)
        with pytest.raises(DatabaseLockedError, match="no swingdial query server"):
            QueryClient(settings).sql("SELECT count(*) FROM posts")
    finally:
        assert _stop(proc) == 0
    assert _count(settings, "SELECT count(*) FROM posts") == 5
