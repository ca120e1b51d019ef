"""Every listener (broker, worker web server, query server, dashboard) refuses a
non-loopback address unless SWINGDIAL_ALLOW_NON_LOOPBACK is set, through one check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from infra.broker import Broker, BrokerError
from stream.config import Settings
from stream.listeners import NonLoopbackError, is_loopback, require_loopback
from stream.query import QueryServerError, serve_in_thread
from stream.worker import create_app


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("192.168.0.10", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_require_loopback_is_overridden_only_explicitly() -> None:
    with pytest.raises(NonLoopbackError, match="SWINGDIAL_ALLOW_NON_LOOPBACK"):
        require_loopback("0.0.0.0", "the thing", Settings())
    require_loopback("0.0.0.0", "the thing", Settings(allow_non_loopback=True))
    require_loopback("127.0.0.1", "the thing", Settings())


def test_allow_non_loopback_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWINGDIAL_ALLOW_NON_LOOPBACK", "true")
    assert Settings().allow_non_loopback is True
    monkeypatch.setenv("SWINGDIAL_ALLOW_NON_LOOPBACK", "false")
    assert Settings().allow_non_loopback is False


def test_broker_refuses_before_starting(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap="0.0.0.0:9092")
    with pytest.raises(BrokerError, match="loopback only"):
        Broker(settings).start()
    assert not settings.kafka_dir.exists()  # refused before writing anything


def test_query_server_refuses(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, query_host="0.0.0.0")
    con = duckdb.connect(":memory:")
    with pytest.raises(QueryServerError, match="loopback only"):
        serve_in_thread(con, settings)
    con.close()


def test_worker_web_server_is_off_by_default_and_refuses(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path))
    assert app.conf.web_enabled is False
    public = Settings(home=tmp_path, worker_web_enabled=True, worker_web_host="0.0.0.0")
    with pytest.raises(NonLoopbackError, match="web server"):
        create_app(public)
    allowed = public.replace(**{"allow_non_loopback": True})
    assert create_app(allowed).conf.web_enabled is True


def test_dashboard_command_refuses(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SWINGDIAL_HOME": str(tmp_path),
        "SWINGDIAL_DASHBOARD_HOST": "0.0.0.0",
    }
    env.pop("SWINGDIAL_ALLOW_NON_LOOPBACK", None)
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", "dashboard"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "refusing to run the dashboard on '0.0.0.0'" in result.stderr
