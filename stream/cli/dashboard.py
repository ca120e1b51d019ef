"""`swingdial dashboard`: serve the Streamlit dial test on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import click

from stream.config import get_settings
from stream.listeners import NonLoopbackError, require_loopback


def app_path() -> Path:
    """Where the installed ``dashboard/app.py`` is (found, not imported: it only reads)."""
    spec = importlib.util.find_spec("dashboard")
    if spec is None or not spec.submodule_search_locations:
        raise click.ClickException("the dashboard package is not installed with swingdial")
    return Path(next(iter(spec.submodule_search_locations))) / "app.py"


def streamlit_command(port: int) -> list[str]:
    """The streamlit invocation: local only, headless, no usage statistics."""
    settings = get_settings()
    try:
        require_loopback(settings.dashboard.host, "the dashboard", settings)
    except NonLoopbackError as exc:
        raise click.ClickException(str(exc)) from None
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.address",
        settings.dashboard.host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]


@click.command("dashboard")
@click.option("--port", type=int, default=None, help="Port (default: SWINGDIAL_DASHBOARD_PORT).")
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="DuckDB file to read (default: SWINGDIAL_DUCKDB_PATH or the home database).",
)
def dashboard_command(port: int | None, db_path: Path | None) -> None:
    """Serve the dial-test dashboard (Streamlit) on 127.0.0.1.

    It reads through the sink's query server while the sink runs, or the database file
    read-only otherwise, and shows "waiting for data" until there is something to show.
    Annotations typed in the page go to Kafka.

    \b
    Examples:
      swingdial dashboard
      swingdial dashboard --port 8600
      swingdial dashboard --db /tmp/fixture.duckdb
      SWINGDIAL_DASHBOARD_REFRESH_S=2 swingdial dashboard
    """
    settings = get_settings()
    env = dict(os.environ)
    if db_path is not None:
        env["SWINGDIAL_DUCKDB_PATH"] = str(db_path.resolve())
    command = streamlit_command(port or settings.dashboard.port)
    click.echo(
        f"dashboard on http://{settings.dashboard.host}:{port or settings.dashboard.port} "
        f"(database {env.get('SWINGDIAL_DUCKDB_PATH', settings.db_path)})",
        err=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    # Become streamlit (same pid), so stopping this command stops the server.
    os.execve(sys.executable, command, env)


COMMANDS = [dashboard_command]
