"""Approval-move and spike alerts, the webhook (a real local HTTP server), and who is on air."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import alerts, onair
from dashboard.queries import dial
from stream.config import Settings, get_settings
from stream.events import load_event
from tests.fixtures_db import build_test_db

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


T0 = pd.Timestamp("2024-08-13 00:00", tz="UTC")


def minute(i: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=i)


def approval_series(values: list[float], cohort: str = "moderate", n: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "minute": [minute(i) for i in range(len(values))],
            "cohort": cohort,
            "target": "Donald Trump",
            "n_stance": n,
            "approval": values,
        }
    )


def test_dial_scale() -> None:
    assert dial(-1.0) == 0 and dial(0.0) == 50 and dial(1.0) == 100


def test_approval_move_within_window_alerts() -> None:
    params = alerts.AlertParams(points=15, window_min=5, min_stance=5)
    # 50 -> 50 -> ... -> 70 dial points: a +20 move within 5 minutes
    found = alerts.approval_moves(approval_series([0, 0, 0, 0, 0, 0.4]), params)
    assert len(found) == 1
    alert = found[0]
    assert alert.kind == "approval_rise" and alert.cohort == "moderate"
    assert alert.before == pytest.approx(50) and alert.after == pytest.approx(70)
    assert alert.minute == minute(5) and minute(0) <= alert.since < minute(5)
    assert "+20 points" in alert.headline() and "n = 20" in alert.headline()
    # a drop is reported as such, and the biggest move is the one named
    drop = alerts.approval_moves(approval_series([0.2, 0.5, 0.1, -0.2]), params)[0]
    assert drop.kind == "approval_drop" and drop.before == pytest.approx(75)


def test_no_alert_for_small_slow_or_untrusted_moves() -> None:
    params = alerts.AlertParams(points=15, window_min=5, min_stance=5)
    assert alerts.approval_moves(approval_series([0, 0.1, 0.2, 0.25]), params) == []  # +12.5
    slow = approval_series([0] + [0.05 * i for i in range(1, 12)])  # +2.5 per minute
    assert alerts.approval_moves(slow, params) == []
    thin = approval_series([0, 0, 0.9], n=3)
    assert alerts.approval_moves(thin, params) == []
    assert alerts.approval_moves(pd.DataFrame(), params) == []
    # a wider window catches the slow one
    assert alerts.approval_moves(slow, alerts.AlertParams(points=15, window_min=10))


def test_spike_alerts_only_recent_episodes() -> None:
    spikes = pd.DataFrame(
        {
            "minute": [minute(2), minute(20)],
            "peak_minute": [minute(3), minute(21)],
            "until": [minute(4), minute(22)],
            "cohort": ["all", "moderate"],
            "kind": ["volume", "sentiment_drop"],
            "value": [300.0, -0.6],
            "baseline": [90.0, -0.1],
            "n": [300, 40],
            "drivers": ["terms: ddos", "terms: border"],
            "sample_posts": ["x servers down / cannot join", "border talk"],
        }
    )
    found = alerts.spike_alerts(spikes, minute(23), window_min=5)
    assert [a.kind for a in found] == ["sentiment_drop"]
    assert found[0].drivers == "terms: border" and found[0].samples == ["border talk"]


@pytest.fixture
def receiver() -> Iterator[tuple[str, list]]:
    """A real HTTP server on 127.0.0.1 that records the JSON bodies it receives."""
    received: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers["Content-Length"])
            received.append((self.headers["Content-Type"], json.loads(self.rfile.read(length))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_receives_json(receiver: tuple[str, list]) -> None:
    url, received = receiver
    found = alerts.approval_moves(approval_series([0, 0, -0.5]), alerts.AlertParams())
    found[0].drivers = "terms: crash"
    found[0].samples = ["what a mess"]
    assert alerts.post_webhook(url, "live-1", found) == 204
    ((content_type, body),) = received
    assert content_type == "application/json"
    assert body["source"] == "swingdial" and body["run_id"] == "live-1"
    (sent,) = body["alerts"]
    assert sent["kind"] == "approval_drop" and sent["target"] == "Donald Trump"
    assert sent["before"] == 50 and sent["after"] == 25 and sent["samples"] == ["what a mess"]
    assert sent["minute"] == minute(2).isoformat() and "-25 points" in sent["headline"]


def test_webhook_setting_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWINGDIAL_DASHBOARD_ALERT_WEBHOOK", "http://127.0.0.1:9/x")
    monkeypatch.setenv("SWINGDIAL_DASHBOARD_ALERT_APPROVAL_POINTS", "8")
    settings = Settings()
    assert settings.dashboard.alert_webhook == "http://127.0.0.1:9/x"
    assert (
        settings.dashboard.alert_approval_points == 8 and settings.dashboard.alert_window_min == 5
    )


# --------------------------------------------------------------------------- on air


def test_speaker_target() -> None:
    targets = ["Donald Trump", "Kamala Harris", "Elon Musk"]
    assert onair.speaker_target("Elon Musk", targets) == "Elon Musk"
    assert onair.speaker_target("Harris campaign", targets) == "Kamala Harris"
    assert onair.speaker_target("Moderator", targets) is None
    assert onair.speaker_target(None, targets) is None


def test_event_file_names_speakers_and_quotes() -> None:
    event = load_event("trump-musk-2024")
    spoken = [m for m in event.moments if m.speaker]
    assert len(spoken) >= 10 and all(m.quote for m in event.moments)
    assert {m.speaker for m in spoken} >= {"Donald Trump", "Elon Musk"}


def test_on_air_follows_the_moments() -> None:
    targets = ["Donald Trump", "Kamala Harris", "Elon Musk"]
    markers = pd.DataFrame(
        {
            "kind": ["moment", "moment", "annotation", "moment", "moment"],
            "id": ["fail", "musk", "ann-1", "trump", "crowd"],
            "at_time": [
                minute(0),
                minute(10),
                minute(12),
                minute(20) + pd.Timedelta(seconds=30),
                minute(30),
            ],
            "label": ["Fails", "Musk opens", "a note", "Trump talks", "Crowd peaks"],
        }
    )
    speakers = {
        "fail": (None, "nobody yet"),
        "musk": ("Elon Musk", "hello"),
        "trump": ("Donald Trump", "crime"),
        "crowd": (None, "two million"),
    }
    moments = onair.numbered_moments(markers, speakers, targets)
    assert list(moments["number"]) == [1, 2, 3, 4]
    assert moments["target"].isna().tolist() == [True, False, False, False]
    assert list(moments["target"].iloc[1:]) == ["Elon Musk", "Donald Trump", "Donald Trump"]
    minutes = pd.Series([minute(i) for i in (0, 9, 10, 19, 20, 31)])
    on_air = onair.on_air_targets(minutes, moments, "Donald Trump")
    assert list(on_air) == [
        "Donald Trump",  # before anyone speaks: the default
        "Donald Trump",
        "Elon Musk",
        "Elon Musk",
        "Donald Trump",  # begun during minute 20: counts for it
        "Donald Trump",  # a moment without speaker keeps the previous one
    ]
    rows = pd.concat(
        [approval_series([0.1] * 25).assign(target=t) for t in targets], ignore_index=True
    )
    followed = onair.follow_on_air(rows, moments, "Donald Trump")
    assert len(followed) == 25 and followed["minute"].is_unique
    assert set(followed.loc[followed["minute"].between(minute(10), minute(19)), "target"]) == {
        "Elon Musk"
    }


def test_page_shows_banner_and_posts_webhook_once(
    receiver: tuple[str, list], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real page on a fixture run: a low threshold fires, the webhook gets it once."""
    url, received = receiver
    db = build_test_db(tmp_path / "fx.duckdb", minutes=60)
    for name, value in {
        "SWINGDIAL_DUCKDB_PATH": str(db),
        "SWINGDIAL_QUERY_PORT": str(closed_port()),
        "SWINGDIAL_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}",
        "SWINGDIAL_DASHBOARD_ALERT_WEBHOOK": url,
        "SWINGDIAL_DASHBOARD_ALERT_APPROVAL_POINTS": "5",
        "SWINGDIAL_DASHBOARD_ALERT_WINDOW_MIN": "10",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        at = AppTest.from_file(APP, default_timeout=120).run()
        assert not at.exception, [e.value for e in at.exception]
        banners = [w.value for w in at.warning if "approval of" in w.value]
        assert banners and "Drivers:" in banners[0]
        assert len(received) == 1
        sent = received[0][1]["alerts"]
        assert sent and {a["kind"] for a in sent} & {"approval_rise", "approval_drop"}
        assert all(abs(a["after"] - a["before"]) > 5 for a in sent if a["target"])
        at.run()  # the next refresh: same alerts, nothing new to send
        assert len(received) == 1
    finally:
        get_settings.cache_clear()
