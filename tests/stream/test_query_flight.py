"""Reading while the sink writes: a real writer process serving Flight, queried from here."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.flight as flight
import pytest
from pydantic import SecretStr

from stream.config import Settings
from stream.query import (
    DatabaseLockedError,
    QueryAuthError,
    QueryClient,
    QueryError,
    QueryTimeoutError,
    ReadOnlyError,
    ResultTooLargeError,
    read_token,
)
from stream.store import connect
from tests.conftest import hold_database
from tests.factories import make_settings

ROOT = Path(__file__).resolve().parents[2]

# A `swingdial sink` without Kafka: the same Sink + QueryServer, fed by the test factories,
# writing a new batch every 50 ms until SIGTERM.
WRITER = """
import signal, sys, threading, time
sys.path.insert(0, {root!r})
from tests.factories import records, scored_post
from stream.config import Settings
from stream.query import lock_down, serve_in_thread
from stream.sink import Sink

settings = Settings()
sink = Sink(settings)
lock_down(sink.store.con, settings)  # as run_sink does
server = serve_in_thread(sink.store.con, settings)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
sink.process(records([scored_post(k) for k in range(100)], settings))
open({ready!r}, "w").write("ready")
n = 100
while not stop.is_set():
    sink.process(records([scored_post(k) for k in range(n, n + 10)], settings, start_offset=n))
    n += 10
    time.sleep(0.05)
server.shutdown()
sink.close()
print(n, flush=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_for(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWINGDIAL_")}
    env.update(settings.to_env())
    return env


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[tuple[Settings, subprocess.Popen]]:
    settings = make_settings(tmp_path, query_port=free_port(), query_timeout_s=3.0)
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(root=str(ROOT), ready=str(ready))],
        env=env_for(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail(f"writer died: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("writer did not become ready")
        time.sleep(0.1)
    yield settings, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _count(client: QueryClient) -> int:
    return client.sql("SELECT count(*) AS n FROM posts").column("n")[0].as_py()


def test_reads_go_through_flight_while_the_writer_holds_the_lock(writer) -> None:
    settings, proc = writer
    with QueryClient(settings) as client:
        info = client.server_info()
        assert info is not None and info["pid"] == proc.pid
        first = _count(client)
        assert client.last_route == "flight"
        assert first >= 100
        time.sleep(0.5)
        second = _count(client)
        assert second > first  # the writer keeps committing while we read
        # Consistent snapshots: each query sees whole batches (multiples of 10).
        assert first % 10 == 0 and second % 10 == 0
        view = client.sql("SELECT * FROM v_minute_cohort ORDER BY minute, cohort LIMIT 5")
        assert view.num_rows == 5 and "ci_low" in view.column_names
        params = client.sql("SELECT count(*) AS n FROM posts WHERE author_id = ?", ["a1"])
        assert params.column("n")[0].as_py() > 0
        with pytest.raises(ReadOnlyError):
            client.sql("DELETE FROM posts")


def test_server_refuses_writes_even_without_the_client_guard(writer) -> None:
    settings, _ = writer
    raw = flight.FlightClient(settings.query.location)
    options = flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {read_token(settings)}".encode())]
    )
    for sql in ("DELETE FROM posts", "SELECT 1; DROP TABLE posts", "CHECKPOINT"):
        ticket = flight.Ticket(json.dumps({"sql": sql}).encode())
        with pytest.raises(flight.FlightServerError) as info:
            raw.do_get(ticket, options).read_all()
        assert json.loads(info.value.extra_info)["kind"] == "read_only"
    raw.close()
    with QueryClient(settings) as client:
        assert _count(client) >= 100  # nothing was deleted


def test_direct_open_fails_clearly_while_the_writer_holds_the_lock(writer) -> None:
    settings, proc = writer
    with pytest.raises(DatabaseLockedError, match=r"locked by another process.*query server"):
        QueryClient(settings, mode="direct").sql("SELECT 1")
    # Same file, but the client looks for a server on a port nobody serves.
    elsewhere = settings.replace(**{"query_port": free_port()})
    with pytest.raises(DatabaseLockedError, match=str(elsewhere.query.port)):
        QueryClient(elsewhere).sql("SELECT count(*) FROM posts")


def test_after_sigterm_reads_open_the_file_directly(writer) -> None:
    settings, proc = writer
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    written = int(out.strip())
    with QueryClient(settings) as client:
        assert _count(client) == written
        assert client.last_route == "direct"
        assert client.server_info() is None


def test_client_ignores_a_server_for_another_file(writer, tmp_path: Path) -> None:
    settings, _ = writer
    other = make_settings(tmp_path / "other", query_port=settings.query.port)
    with QueryClient(other) as client:
        assert client.server_info() is None
        with pytest.raises(FileNotFoundError):
            client.sql("SELECT 1")


def test_export_and_cli_while_the_writer_runs(
    writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb
    from click.testing import CliRunner

    from stream.cli import main
    from stream.config import get_settings
    from stream.export import export

    settings, _ = writer
    out = tmp_path / "archive"
    counts = export(settings, out)  # over Flight + pyarrow.dataset (the file is locked)
    assert counts["posts"] >= 100 and counts["stances"] == 2 * counts["posts"]
    con = duckdb.connect()
    (n,) = con.execute(
        "SELECT count(*) FROM read_parquet(?, hive_partitioning = true) "
        "WHERE run_id = 'run-a' AND event_id = 'test-event'",
        [str(out / "posts" / "**" / "*.parquet")],
    ).fetchone()
    assert n == counts["posts"]

    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        ok = CliRunner().invoke(main, ["sql", "SELECT count(*) AS n FROM posts", "-f", "json"])
        refused = CliRunner().invoke(main, ["sql", "DELETE FROM posts"])
        runs = CliRunner().invoke(main, ["runs", "-f", "csv"])
    finally:
        get_settings.cache_clear()
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)[0]["n"] >= 100
    assert refused.exit_code == 2 and "read-only" in refused.output
    assert runs.exit_code == 0 and "run-a" in runs.output


# What a user (or anyone else on the machine) tried in the issue: each gets a clear error,
# and the sink keeps writing meanwhile.
ESCAPES = [
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_text('/proc/self/environ')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('/tmp/*.parquet')",
]
REFUSED = [
    "COPY posts TO '/tmp/stolen.csv'",
    "ATTACH '/tmp/other.duckdb' AS other",
    "SET enable_external_access = true",
    "SET memory_limit = '100GB'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "WITH d AS (DELETE FROM posts RETURNING *) SELECT * FROM d",
]


@pytest.mark.parametrize("route", ["flight", "direct"])
def test_sql_cannot_read_the_machine(writer, route: str) -> None:
    settings, proc = writer
    if route == "direct":
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    with QueryClient(settings, mode=route) as client:
        for sql in ESCAPES:
            with pytest.raises(QueryError, match="disabled by configuration"):
                client.sql(sql)
        for sql in REFUSED:
            with pytest.raises((ReadOnlyError, QueryError)):
                client.sql(sql)
        assert client.last_route in (None, route)
        before = _count(client)
        setting = client.sql(
            "SELECT value FROM duckdb_settings() WHERE name = 'enable_external_access'"
        )
        assert setting.column("value")[0].as_py() == "false"
        if route == "flight":
            time.sleep(0.3)
            assert _count(client) > before  # the sink kept writing through all of it


def test_huge_results_and_slow_queries_are_cut_off_server_side(writer) -> None:
    """The writer serves with a 1,000,000-row cap and a 3 s timeout (fixture settings):
    whatever the client's own settings say, the server refuses past them."""
    settings, _ = writer
    generous = settings.replace(**{"query_max_rows": 10**9, "query_timeout_s": 600.0})
    with QueryClient(generous) as client:
        with pytest.raises(ResultTooLargeError, match="LIMIT"):
            client.sql("SELECT * FROM range(30000000)")
        assert client.sql("SELECT count(*) AS n FROM range(30000000)").num_rows == 1
        before = _count(client)
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError, match="cancelled after 3 s"):
            client.sql("SELECT count(*) FROM range(100000) a, range(100000) b, range(1000) c")
        assert time.monotonic() - started < 30
        assert _count(client) > before  # the sink kept writing


def test_timeout_interrupts_the_query_on_the_direct_path(tmp_path: Path) -> None:
    from tests.factories import records, scored_post

    settings = make_settings(tmp_path, query_timeout_s=0.5)
    from stream.sink import Sink

    sink = Sink(settings)
    sink.process(records([scored_post(k) for k in range(3)], settings))
    sink.close()
    started = time.monotonic()
    with QueryClient(settings, mode="direct") as client, pytest.raises(QueryTimeoutError):
        client.sql("SELECT count(*) FROM range(100000) a, range(100000) b, range(100000) c")
    assert time.monotonic() - started < 20


def test_clients_without_the_token_are_refused(writer) -> None:
    settings, _ = writer
    token_file = settings.query_token_path
    assert token_file.stat().st_mode & 0o777 == 0o600
    raw = flight.FlightClient(settings.query.location)
    ticket = flight.Ticket(json.dumps({"sql": "SELECT count(*) FROM posts"}).encode())
    with pytest.raises(flight.FlightUnauthenticatedError):
        raw.do_get(ticket).read_all()
    wrong = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer guess")])
    with pytest.raises(flight.FlightUnauthenticatedError):
        raw.do_get(ticket, wrong).read_all()
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(raw.do_action(flight.Action("ping", b"")))
    raw.close()
    stranger = settings.replace(**{"query_token": SecretStr("not-the-token")})
    with QueryClient(stranger) as client, pytest.raises(QueryAuthError, match="token"):
        client.sql("SELECT 1")
    with QueryClient(settings) as client:  # the token file's reader gets in
        assert _count(client) >= 100


def test_auto_client_waits_out_a_short_writer_lock(tmp_path: Path) -> None:
    """A sink that is starting holds the file before its server answers: the query waits."""
    settings = make_settings(tmp_path).replace(query_port=free_port())
    connect(settings.db_path).close()  # the schema, as after an earlier run
    writer = hold_database(settings.db_path, 1.5, read_only=False)
    try:
        started = time.monotonic()
        with QueryClient(settings, timeout_s=30) as client:
            assert client.sql("SELECT count(*) AS n FROM posts").to_pylist() == [{"n": 0}]
            assert client.last_route == "direct"
        assert time.monotonic() - started > 0.5  # it met the lock and waited it out
    finally:
        writer.wait(timeout=30)
    # A lock past the wait still ends in the clear error, after about timeout_s.
    writer = hold_database(settings.db_path, 30, read_only=False)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseLockedError, match="locked by another process"):
            QueryClient(settings, timeout_s=1.0).sql("SELECT 1")
        assert time.monotonic() - started < 10
    finally:
        writer.kill()
        writer.wait()
