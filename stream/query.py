"""The read path: read-only SQL while the sink writes, and after it stopped.

DuckDB lets one process write a file and, while it does, no other process may open it (not
even read-only). So the sink serves reads itself: :class:`QueryServer` is an Arrow Flight
server running in a thread of the sink process, answering each query on its own
``con.cursor()`` inside a READ ONLY transaction (a consistent snapshot of committed
batches). :class:`QueryClient` uses that server when it answers for the same database file,
and otherwise opens the file read-only for just one query (so it never keeps a lock that
would stop the sink from starting). :func:`ensure_read_only` classifies statements with
DuckDB's own parser and is applied on both sides.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.flight as flight

from stream.config import Settings
from stream.listeners import NonLoopbackError, require_loopback
from stream.store import SCHEMA_VERSION, connect, is_lock_error

log = logging.getLogger(__name__)

ST = duckdb.StatementType

_READ_TYPES = {ST.SELECT, ST.EXPLAIN, ST.PRAGMA, ST.CALL}

# PRAGMAs that only read (others change settings, checkpoint, or import databases).
READ_PRAGMAS = {
    "table_info",
    "show",
    "show_tables",
    "show_tables_expanded",
    "show_databases",
    "database_list",
    "database_size",
    "storage_info",
    "metadata_info",
    "version",
    "platform",
    "functions",
    "collations",
    "user_agent",
}

_PRAGMA_NAME = re.compile(r"^\s*pragma\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)
_CALL_NAME = re.compile(r"^\s*call\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)
_EXPLAIN_ANALYZE = re.compile(
    r"^\s*explain\s+(?:\(\s*[^)]*\)\s*)?analy[sz]e\s+(?P<inner>.*)$", re.IGNORECASE | re.DOTALL
)


class ReadOnlyError(ValueError):
    """The SQL would change the database (or cannot be shown not to)."""


class QueryError(RuntimeError):
    """DuckDB refused the query (syntax, unknown table, ...)."""


class QueryServerError(RuntimeError):
    """The query server could not start (usually: the port is taken)."""


class DatabaseLockedError(RuntimeError):
    """The file is held by a writer that does not answer queries.

    ``other_process``: the writer is another process (it may be a sink still starting its
    server), not a connection of this one.
    """

    def __init__(self, message: str, other_process: bool = True) -> None:
        super().__init__(message)
        self.other_process = other_process


class ResultTooLargeError(QueryError):
    """The result is over ``query_max_rows`` / ``query_max_bytes``."""


class QueryTimeoutError(QueryError):
    """The query ran past ``query_timeout_s`` and was cancelled."""


class QueryAuthError(QueryError):
    """The query server refused this client's token."""


# ----------------------------------------------------------------- the sandbox
# Every SQL entry point (the Flight server inside the sink, the direct read-only open, and so
# the dashboard) runs on a DuckDB that cannot touch anything but its own file: no file or
# network reads (read_text, read_csv, glob, COPY, ATTACH), no extension installs or loads,
# bounded memory, and settings locked so a query cannot undo any of it.


def sandbox_config(settings: Settings) -> dict[str, Any]:
    """DuckDB options of the read path, in the order they must be applied (lock last)."""
    return {
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "memory_limit": settings.query.memory_limit,
        "lock_configuration": True,
    }


def lock_down(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Apply :func:`sandbox_config` to an open database (the sink's, before it serves).

    A process shares one DuckDB instance per file, so it may already be locked down."""
    ((locked, external),) = con.execute(
        "SELECT current_setting('lock_configuration'), current_setting('enable_external_access')"
    ).fetchall()
    if locked:
        if external:
            raise RuntimeError("database settings are locked with external access enabled")
        return
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    for name, value in sandbox_config(settings).items():
        con.execute(f"SET GLOBAL {name} = ?", [value])


def fetch_capped(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Any,
    settings: Settings,
    cancelled: Callable[[], bool] = lambda: False,
) -> pa.Table:
    """Run ``sql`` and stream its result in, refusing it past the row/byte caps.

    A timer interrupts the query at ``query_timeout_s`` (DuckDB's own interrupt, so the
    work stops, not just the wait); ``cancelled`` (the Flight client went away) does too.
    """
    timer = threading.Timer(settings.query.timeout_s, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        relation = con.sql(sql, params=params) if params is not None else con.sql(sql)
        if relation is None:
            return pa.table({})
        reader = relation.to_arrow_reader(64 * 1024)
        batches, rows, size = [], 0, 0
        for batch in reader:
            rows += batch.num_rows
            size += batch.nbytes
            if rows > settings.query.max_rows or size > settings.query.max_bytes:
                con.interrupt()
                raise ResultTooLargeError(
                    f"the result is larger than {settings.query.max_rows:,} rows or "
                    f"{settings.query.max_bytes:,} bytes (SWINGDIAL_QUERY_MAX_ROWS / "
                    "_MAX_BYTES): add a LIMIT or aggregate"
                )
            if cancelled():
                con.interrupt()
                raise QueryTimeoutError("the client cancelled the query")
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except duckdb.InterruptException:
        raise QueryTimeoutError(
            f"query cancelled after {settings.query.timeout_s:g} s (SWINGDIAL_QUERY_TIMEOUT_S)"
        ) from None
    finally:
        timer.cancel()


# ----------------------------------------------------------------- the token


def ensure_token(settings: Settings) -> str:
    """The query server's token: ``SWINGDIAL_QUERY_TOKEN``, else a new random one written
    to ``<home>/query.token`` (mode 0600, readable only by this user) at each sink start."""
    if settings.query.token is not None:
        return settings.query.token.get_secret_value()
    token = secrets.token_urlsafe(32)
    path = settings.query_token_path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(token)
    return token


def read_token(settings: Settings) -> str | None:
    """What a client presents: ``SWINGDIAL_QUERY_TOKEN``, else the sink's token file."""
    if settings.query.token is not None:
        return settings.query.token.get_secret_value()
    try:
        return settings.query_token_path.read_text().strip() or None
    except OSError:
        return None


class _TokenCheck(flight.ServerMiddlewareFactory):
    """Refuses every call (queries and ping) without ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}".encode()

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> None:
        for value in headers.get("authorization", []):
            given = value.encode() if isinstance(value, str) else bytes(value)
            if hmac.compare_digest(given, self.expected):
                return None
        raise flight.FlightUnauthenticatedError(
            "swingdial query server: missing or wrong token (set SWINGDIAL_QUERY_TOKEN, or "
            "run as the user who can read <home>/query.token)"
        )


def _strip_comments(sql: str) -> str:
    sql = re.sub(r"--[^\n]*", " ", sql)
    return re.sub(r"/\*.*?\*/", " ", sql, flags=re.DOTALL)


def _check_statement(statement: Any) -> None:
    text = _strip_comments(statement.query).strip().rstrip(";")
    short = " ".join(text.split())[:80]
    try:
        kind = statement.type
    except ValueError:  # a statement type this duckdb module cannot even name
        raise ReadOnlyError(f"statement kind not recognised, refused: {short}") from None
    if kind == ST.MULTI:
        raise ReadOnlyError(
            "this statement expands into several (e.g. PIVOT without IN creates a type); "
            f"list the values: PIVOT ... ON col IN (...); got: {short}"
        )
    if kind not in _READ_TYPES:
        raise ReadOnlyError(
            f"{kind.name} statements are not allowed: swingdial sql is read-only "
            f"(only SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN and read PRAGMAs); "
            f"got: {short}"
        )
    if kind == ST.PRAGMA:
        match = _PRAGMA_NAME.match(text)
        if not match or match.group(1).lower() not in READ_PRAGMAS:
            raise ReadOnlyError(
                f"this PRAGMA is not allowed (read-only PRAGMAs: "
                f"{', '.join(sorted(READ_PRAGMAS))}); got: {short}"
            )
    elif kind == ST.CALL:
        match = _CALL_NAME.match(text)
        name = match.group(1).lower() if match else ""
        if not (name.startswith("pragma_") or name.startswith("duckdb_")):
            raise ReadOnlyError(
                f"only CALL pragma_*() / duckdb_*() table functions are allowed "
                f"(CHECKPOINT and friends write); got: {short}"
            )
    elif kind == ST.EXPLAIN:
        match = _EXPLAIN_ANALYZE.match(text)
        if match:  # EXPLAIN ANALYZE runs the statement: check what it runs
            ensure_read_only(match.group("inner"))
        elif re.match(r"^\s*explain\s+\(", text, re.IGNORECASE) and re.search(
            r"analy[sz]e", text[: text.find(")") + 1], re.IGNORECASE
        ):
            raise ReadOnlyError(f"EXPLAIN with ANALYZE options is not allowed; got: {short}")


def ensure_read_only(sql: str) -> list[str]:
    """Raise :class:`ReadOnlyError` unless every statement in ``sql`` only reads.

    Uses DuckDB's parser (``duckdb.extract_statements``) rather than keywords, so comments,
    CTEs and odd spacing cannot hide a write; returns the statements' text. Syntax errors
    are raised as :class:`QueryError`.
    """
    if not sql or not sql.strip():
        raise QueryError("empty SQL")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from None
    except ValueError as exc:  # a statement type this duckdb module cannot name
        raise ReadOnlyError(f"statement kind not recognised, refused: {exc}") from None
    if not statements:
        raise QueryError("no SQL statement found")
    for statement in statements:
        _check_statement(statement)
    return [s.query for s in statements]


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


# --------------------------------------------------------------------------- server


class QueryServer(flight.FlightServerBase):
    """Read-only SQL over Arrow Flight, served from inside the writer process.

    Tickets are JSON ``{"sql": ..., "params": ...}``; actions: ``ping`` (which database,
    which process). Every query runs on a fresh cursor in a READ ONLY transaction, so even
    a statement the guard let through cannot write.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, settings: Settings, token: str | None = None
    ) -> None:
        token = token or ensure_token(settings)
        super().__init__(settings.query.location, middleware={"token": _TokenCheck(token)})
        self.settings = settings
        self._lock = threading.Lock()
        self._root: duckdb.DuckDBPyConnection | None = con.cursor()  # parent of query cursors
        self.thread: threading.Thread | None = None

    def shutdown(self) -> None:
        """Stop serving and release the cursor on the writer's database."""
        super().shutdown()
        if self.thread is not None:
            self.thread.join(timeout=10)
        with self._lock:
            if self._root is not None:
                self._root.close()
                self._root = None

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._root is None:
                raise self._error("unavailable", "the query server is shutting down")
            return self._root.cursor()

    @staticmethod
    def _error(kind: str, message: str) -> flight.FlightServerError:
        return flight.FlightServerError(
            message, extra_info=json.dumps({"kind": kind, "message": message}).encode()
        )

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
        try:
            request = json.loads(ticket.ticket)
            sql, params = request["sql"], request.get("params")
        except (ValueError, KeyError, TypeError) as exc:
            raise self._error("bad_request", f"bad ticket: {exc}") from None
        try:
            ensure_read_only(sql)
        except ReadOnlyError as exc:
            raise self._error("read_only", str(exc)) from None
        except QueryError as exc:
            raise self._error("sql", str(exc)) from None
        cur = self._cursor()
        try:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            table = fetch_capped(cur, sql, params, self.settings, context.is_cancelled)
            cur.execute("ROLLBACK")
        except QueryTimeoutError as exc:
            raise self._error("timeout", str(exc)) from None
        except ResultTooLargeError as exc:
            raise self._error("too_large", str(exc)) from None
        except duckdb.Error as exc:
            raise self._error("sql", str(exc)) from None
        finally:
            cur.close()
        return flight.RecordBatchStream(table)

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return [("ping", "which database this server reads, and its pid")]

    def do_action(self, context: Any, action: flight.Action) -> list[bytes]:
        if action.type != "ping":
            raise self._error("bad_request", f"unknown action {action.type!r}")
        info = {
            "db_path": str(Path(self.settings.db_path).resolve()),
            "pid": os.getpid(),
            "schema_version": SCHEMA_VERSION,
        }
        return [json.dumps(info).encode()]


def serve_in_thread(con: duckdb.DuckDBPyConnection, settings: Settings) -> QueryServer:
    """Start a :class:`QueryServer` on ``settings.query.location`` in a daemon thread."""
    try:
        require_loopback(settings.query.host, "the query server", settings)
    except NonLoopbackError as exc:
        raise QueryServerError(str(exc)) from None
    try:
        server = QueryServer(con, settings)
    except pa.ArrowException as exc:
        raise QueryServerError(
            f"cannot serve queries on {settings.query.location} ({exc}); is another sink "
            f"running? Set SWINGDIAL_QUERY_PORT to a free port, or run with --no-serve."
        ) from None
    server.thread = threading.Thread(target=server.serve, name="swingdial-query", daemon=True)
    server.thread.start()
    return server


# --------------------------------------------------------------------------- client


class QueryClient:
    """Run read-only SQL: via the sink's Flight server if it serves this file, else directly.

    ``mode`` is ``"auto"`` (default), ``"flight"`` (fail if no server) or ``"direct"``.
    """

    def __init__(self, settings: Settings, mode: str = "auto", timeout_s: float = 5.0) -> None:
        if mode not in {"auto", "flight", "direct"}:
            raise ValueError(f"mode must be auto, flight or direct, not {mode!r}")
        self.settings = settings
        self.mode = mode
        self.timeout_s = timeout_s
        self.last_route: str | None = None  # "flight" or "direct": how the last query ran
        self._client: flight.FlightClient | None = None
        self._info: dict[str, Any] | None = None
        self._checked_at = -1e9

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def server_info(self, refresh: bool = False) -> dict[str, Any] | None:
        """The Flight server's ping answer if it serves *our* database file, else None."""
        if self.mode == "direct":
            return None
        if not refresh and time.monotonic() - self._checked_at < 2.0:
            return self._info
        self._checked_at = time.monotonic()
        self._info = None
        try:
            if self._client is None:
                self._client = flight.FlightClient(self.settings.query.location)
            options = self._options(min(self.timeout_s, 2.0))
            results = list(self._client.do_action(flight.Action("ping", b""), options))
            info = json.loads(results[0].body.to_pybytes())
        except flight.FlightUnauthenticatedError as exc:
            self.close()
            if read_token(self.settings) is None:  # not our sink (it wrote no token for us)
                return None
            raise QueryAuthError(str(exc).splitlines()[0]) from None
        except (flight.FlightError, OSError, ValueError, IndexError):
            self.close()
            return None
        if not _same_file(info.get("db_path", ""), self.settings.db_path):
            log.debug("query server at %s serves another file", self.settings.query.location)
            return None
        self._info = info
        return info

    def sql(self, query: str, params: list[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run one read-only query (or several; the last one's rows are returned).

        On a lock error the auto client keeps asking for up to ``timeout_s``: a sink that is
        starting holds the file a moment before its server answers. A writer that never
        serves (``--no-serve``) still ends in :class:`DatabaseLockedError`.
        """
        ensure_read_only(query)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return self._route(query, params)
            except DatabaseLockedError as exc:
                if self.mode != "auto" or not exc.other_process or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
            self._checked_at = -1e9  # ask for the server again, not its cached absence

    def _route(self, query: str, params: Any) -> pa.Table:
        """One attempt: the Flight server if it serves our file, else the file directly."""
        if self.server_info() is not None:
            try:
                return self._flight_sql(query, params)
            except flight.FlightUnavailableError:
                self._checked_at = -1e9  # server went away (sink stopped): read the file
                if self.server_info() is not None:
                    raise
        if self.mode == "flight":
            raise QueryError(f"no swingdial query server at {self.settings.query.location}")
        return self._direct_sql(query, params)

    def _options(self, timeout_s: float) -> flight.FlightCallOptions:
        """Call options with the token (read afresh, so a restarted sink's new one works)."""
        token = read_token(self.settings)
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        return flight.FlightCallOptions(timeout=timeout_s, headers=headers)

    def _flight_sql(self, query: str, params: Any) -> pa.Table:
        assert self._client is not None
        ticket = flight.Ticket(json.dumps({"sql": query, "params": params}, default=str))
        options = self._options(max(self.timeout_s, self.settings.query.timeout_s + 5.0))
        try:
            table = self._client.do_get(ticket, options).read_all()
        except flight.FlightUnauthenticatedError as exc:
            raise QueryAuthError(str(exc).splitlines()[0]) from None
        except flight.FlightServerError as exc:
            kind, message = "sql", str(exc)
            if exc.extra_info:
                try:
                    detail = json.loads(exc.extra_info)
                    kind, message = detail["kind"], detail["message"]
                except (ValueError, KeyError):
                    pass
            error = {
                "read_only": ReadOnlyError,
                "too_large": ResultTooLargeError,
                "timeout": QueryTimeoutError,
            }.get(kind, QueryError)
            raise error(message) from None
        self.last_route = "flight"
        return table

    def connect_direct(self) -> duckdb.DuckDBPyConnection:
        """Open the file read-only and sandboxed, turning DuckDB's lock error into a clear one."""
        try:
            con = connect(self.settings.db_path, read_only=True)
            lock_down(con, self.settings)
            return con
        except duckdb.ConnectionException as exc:
            raise DatabaseLockedError(
                f"{self.settings.db_path} is open for writing in this process; read through "
                f"its query server instead. DuckDB said: {exc}",
                other_process=False,
            ) from None
        except duckdb.IOException as exc:
            if not is_lock_error(exc):
                raise
            raise DatabaseLockedError(
                f"{self.settings.db_path} is locked by another process (a sink started "
                f"with --no-serve, or another writer), and no swingdial query server answers "
                f"at {self.settings.query.location} with a token this client has "
                f"({self.settings.query_token_path} or SWINGDIAL_QUERY_TOKEN). Restart the "
                f"sink without --no-serve, "
                f"or stop it, then retry. DuckDB said: {exc}"
            ) from None

    def _direct_sql(self, query: str, params: Any) -> pa.Table:
        con = self.connect_direct()
        try:
            table = fetch_capped(con, query, params, self.settings)
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from None
        finally:
            con.close()
        self.last_route = "direct"
        return table
