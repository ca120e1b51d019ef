"""The Streamlit app under streamlit.testing (real fixture DuckDB, no mocks), charts, CLI."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import streamlit as st
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from dashboard import charts, queries
from stream.cli.dashboard import app_path, dashboard_command, streamlit_command
from stream.config import Settings, get_settings
from stream.query import serve_in_thread
from stream.store import connect
from tests.fixtures_db import LIVE_RUN, REPLAY_RUN, build_test_db

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
TIMEOUT_S = 120


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_db(tmp_path_factory.mktemp("dash") / "fx.duckdb", minutes=90)


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Nothing listening for Flight or Kafka: direct file reads, annotations fail fast."""
    monkeypatch.setenv("SWINGDIAL_QUERY_PORT", str(closed_port()))
    monkeypatch.setenv("SWINGDIAL_KAFKA_BOOTSTRAP", f"127.0.0.1:{closed_port()}")
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def start(monkeypatch: pytest.MonkeyPatch, db: Path) -> AppTest:
    monkeypatch.setenv("SWINGDIAL_DUCKDB_PATH", str(db))
    get_settings.cache_clear()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts_of(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def drill_table(at: AppTest) -> pd.DataFrame:
    tables = [d.value for d in at.dataframe if "text" in d.value.columns]
    assert tables, "no drill-down table"
    return tables[0]


def test_renders_charts_tables_and_run_picker(
    app_env: pytest.MonkeyPatch, fixture_db: Path
) -> None:
    at = start(app_env, fixture_db)
    run = at.selectbox(key="run")
    assert len(run.options) == 2 and all(LIVE_RUN in o or REPLAY_RUN in o for o in run.options)
    assert run.value == LIVE_RUN  # the original run, not its replay, by default
    # approval dial + mood + approval of 3 targets + volume; health (off in replay) adds one
    assert len(charts_of(at)) == 6
    at.toggle(key="health:replay").set_value(True).run()
    assert len(charts_of(at)) == 7
    health = {m.label: m.value for m in at.metric}
    assert health["Scoring p50"].endswith("ms") and health["End-to-end p95"].endswith("ms")
    assert health["Sink rejects"] == "0"
    assert "Dead letters by reason" in " ".join(m.value for m in at.markdown)
    spikes_table = [d.value for d in at.dataframe if "drivers" in d.value.columns]
    assert spikes_table and len(spikes_table[0]) > 0
    assert "tech_outage" in " ".join(spikes_table[0]["drivers"].astype(str))
    assert len(drill_table(at)) > 0
    assert not at.info  # no "waiting" message
    # headline tiles: one per cohort, approval 0-100 of the last complete minute with its n
    tiles = {m.label: m.value for m in at.metric}
    assert {"moderate / undecided", "lean left", "lean right"} <= set(tiles)
    assert all(0 <= int(tiles[c]) <= 100 for c in ("lean left", "lean right"))
    assert int(tiles["lean right"]) > int(tiles["lean left"])  # the fixture's story
    assert sum("stance posts" in c.value for c in at.caption) >= 3
    text = " ".join(m.value for m in at.markdown)
    assert "last complete minute" in text
    assert "| on air | moment | what was said (paraphrase) |" in text
    assert "Musk blames a DDoS attack" in text and "Elon Musk" in text


def test_run_picker_switches_run(app_env: pytest.MonkeyPatch, fixture_db: Path) -> None:
    at = start(app_env, fixture_db)
    live_dial = charts_of(at)[0].spec
    at.selectbox(key="run").set_value(REPLAY_RUN).run()
    assert not at.exception
    assert charts_of(at)[0].spec != live_dial
    assert (drill_table(at)["model_version"] == "minilm-heads-1.1.0").all()


def test_drilldown_filters_change_the_table(app_env: pytest.MonkeyPatch, fixture_db: Path) -> None:
    at = start(app_env, fixture_db)
    minute_box = next(s for s in at.selectbox if s.label == "Minute (UTC)" and "drill" in s.key)
    minute_box.set_value("00:20").run()
    everything = drill_table(at)
    assert len(everything) > 0 and set(everything["sentiment"]) >= {"negative"}
    at.selectbox(key="drill_sentiment").set_value("negative").run()
    negative = drill_table(at)
    assert any("posts at 00:20 UTC" in c.value for c in at.caption)  # the minute stays put
    assert 0 < len(negative) < len(everything)
    assert (negative["sentiment"] == "negative").all()
    at.selectbox(key="drill_cohort").set_value("moderate").run()
    moderate = drill_table(at)
    assert len(moderate) <= len(negative) and (moderate["cohort"] == "moderate").all()
    at.selectbox(key="drill_target").set_value("Elon Musk").run()
    at.selectbox(key="drill_stance").set_value("against").run()
    against = drill_table(at)
    assert "stance" in against.columns and (against["stance"] == "against").all()
    assert not at.exception


def test_sidebar_filters_live_mode_and_comparison(
    app_env: pytest.MonkeyPatch, fixture_db: Path
) -> None:
    at = start(app_env, fixture_db)
    at.selectbox(key="topic").set_value("tech_outage").run()
    assert not at.exception
    at.multiselect(key="cohorts").set_value(["moderate"]).run()
    assert not at.exception
    assert set(drill_table(at)["cohort"]) <= {"moderate"}
    n_charts = len(charts_of(at))
    at.selectbox(key="compare").set_value(REPLAY_RUN).run()
    assert not at.exception
    assert len(charts_of(at)) == n_charts + 1  # the compared run's dial, side by side
    at.selectbox(key="target").set_value("Elon Musk").run()  # pin the dial
    assert not at.exception
    assert "Approval of Elon Musk" in " ".join(m.value for m in at.markdown)
    at.radio(key="mode").set_value("live").run()
    assert not at.exception
    assert any(t.key == "health:live" and t.value for t in at.toggle)


def test_replay_scrubber_stops_the_lines_at_the_playhead(
    app_env: pytest.MonkeyPatch, fixture_db: Path
) -> None:
    at = start(app_env, fixture_db)
    scrubber = next(s for s in at.slider if s.key.startswith("playhead:"))
    scrubber.set_value(scrubber.value.replace(hour=0, minute=30)).run()
    assert not at.exception
    assert "at **00:30 UTC** (last complete minute)" in " ".join(m.value for m in at.markdown)
    drill = next(s for s in at.selectbox if s.label == "Minute (UTC)" and "drill" in s.key)
    assert drill.options[-1] == "00:30"  # nothing after the playhead


def test_live_mode_reads_through_flight_while_a_writer_holds_the_file(
    app_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The live case: the sink holds the file, so the page must read over Arrow Flight."""
    db = build_test_db(tmp_path / "held.duckdb", minutes=30)
    port = closed_port()
    app_env.setenv("SWINGDIAL_QUERY_PORT", str(port))
    writer = connect(db)  # holds DuckDB's lock, like the sink
    server = serve_in_thread(writer, Settings(duckdb_path=db, query_port=port))
    try:
        with pytest.raises(duckdb.Error):  # no direct reads while the writer holds it
            duckdb.connect(str(db), read_only=True)
        at = start(app_env, db)
        at.radio(key="mode").set_value("live").run()
        assert not at.exception
        assert "at **00:29 UTC**" in " ".join(m.value for m in at.markdown)
        assert len(charts_of(at)) == 7  # live mode shows health by default
        # the "sink" stores a new minute; the next refresh follows it
        for table in ("scores", "posts"):  # the sink writes both in one transaction
            writer.execute(
                f"INSERT INTO {table} SELECT * REPLACE (post_id || '-new' AS post_id, minute "
                "+ INTERVAL 1 MINUTE AS minute, event_time + INTERVAL 1 MINUTE AS event_time) "
                f"FROM {table} WHERE run_id = ? AND minute = (SELECT max(minute) FROM {table} "
                "WHERE run_id = ?)",
                [LIVE_RUN, LIVE_RUN],
            )
        st.cache_data.clear()  # as if the refresh period had passed
        at.run()
        assert not at.exception
        assert "at **00:30 UTC**" in " ".join(m.value for m in at.markdown)
    finally:
        server.shutdown()
        writer.close()


def test_annotation_with_kafka_down_shows_a_message(
    app_env: pytest.MonkeyPatch, fixture_db: Path
) -> None:
    at = start(app_env, fixture_db)
    note = next(t for t in at.text_input if t.label == "Note")
    note.input("Moderates react to the crash")
    next(b for b in at.button if b.label == "Add annotation").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "Kafka is unreachable" in errors
    assert len(charts_of(at)) == 6  # the rest of the page is intact


def test_exports_csv_html_and_png(app_env: pytest.MonkeyPatch, fixture_db: Path) -> None:
    at = start(app_env, fixture_db)
    labels = {b.label for b in at.get("download_button")}
    assert {"Download data (CSV)", "Download chart (HTML)"} <= labels
    next(b for b in at.button if b.label == "Render chart as PNG").click().run()
    assert not at.exception
    assert not any("PNG export unavailable" in w.value for w in at.warning)
    assert "Download chart (PNG)" in {b.label for b in at.get("download_button")}
    assert at.session_state["png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_waiting_message_for_missing_and_empty_db(
    app_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = start(app_env, tmp_path / "nothing-here.duckdb")
    assert any("Waiting for data" in i.value for i in at.info)
    assert not charts_of(at)
    empty = tmp_path / "empty.duckdb"
    connect(empty).close()  # schema, no rows
    at = start(app_env, empty)
    assert any("Waiting for data" in i.value for i in at.info)
    assert not charts_of(at)


def test_dial_chart_spec_emphasises_moderates() -> None:
    minutes = pd.date_range("2024-08-13 00:00", periods=3, freq="min", tz="UTC")
    lines = pd.DataFrame(
        {
            "minute": list(minutes) * 2,
            "cohort": ["lean_left"] * 3 + ["moderate"] * 3,
            "n": [10, 2, 10, 10, 10, 10],
            "net_sentiment": [0.1, 0.9, 0.1, -0.2, -0.1, 0.0],
            "ci_low": [0.0] * 6,
            "ci_high": [0.2] * 6,
            "low_n": [False, True, False, False, False, False],
        }
    )
    markers = pd.DataFrame(
        {
            "kind": ["moment", "annotation"],
            "at_time": [minutes[1], minutes[2]],
            "label": ["Crash", "note"],
            "author": [None, "maria"],
            "number": ["1", "A1"],
        }
    )
    spec = charts.dial_chart(lines, markers).to_dict()
    line = next(layer for layer in spec["layer"] if layer.get("mark", {}).get("type") == "line")
    widths = line["encoding"]["strokeWidth"]["scale"]
    assert widths["domain"][0] == "moderate" and widths["range"][0] == max(widths["range"])
    assert line["encoding"]["color"]["scale"]["domain"][0] == "moderate"
    assert line["encoding"]["color"]["legend"]["values"] == ["moderate", "lean_left"]
    rules = [layer for layer in spec["layer"] if layer.get("mark", {}).get("type") == "rule"]
    assert len(rules) >= 3  # zero line, moment, annotation
    texts = [layer for layer in spec["layer"] if layer.get("mark", {}).get("type") == "text"]
    assert len(texts) == 2  # the moment's and the note's numbers
    assert {t["encoding"]["text"]["field"] for t in texts} == {"number"}


def test_approval_chart_scale_and_extra_cohort() -> None:
    """0-100 with the 50 line; "unplaced" and any cohort name without a style are thin grey
    lines."""
    minutes = pd.date_range("2024-08-13 00:00", periods=2, freq="min", tz="UTC")
    approval = pd.DataFrame(
        {
            "minute": list(minutes) * 2,
            "cohort": ["moderate"] * 2 + ["unplaced"] * 2,
            "target": "Donald Trump",
            "n_posts": [20, 20, 9, 9],
            "n_stance": [12, 3, 8, 8],
            "approval": [0.2, -0.5, 0.0, 0.1],
            "lo": [-0.2, -0.9, -0.4, -0.3],
            "hi": [0.5, 0.3, 0.4, 0.5],
            "low_n": [False, True, False, False],
        }
    )
    spec = charts.approval_chart(approval, cohort_labels={"moderate": "moderate (5 authors)"})
    spec = spec.to_dict()
    line = next(layer for layer in spec["layer"] if layer.get("mark", {}).get("type") == "line")
    assert line["encoding"]["y"]["scale"]["domain"] == [0.0, 100.0]
    colors = line["encoding"]["color"]["scale"]
    widths = line["encoding"]["strokeWidth"]["scale"]
    grey = colors["range"][colors["domain"].index("unplaced")]
    red, green, blue = (int(grey[i : i + 2], 16) for i in (1, 3, 5))
    assert red == green == blue  # grey
    assert widths["range"][widths["domain"].index("unplaced")] == min(widths["range"])
    assert "moderate (5 authors)" in line["encoding"]["color"]["legend"]["labelExpr"]
    mid = next(layer for layer in spec["layer"] if layer.get("mark", {}).get("type") == "rule")
    data = spec["datasets"][mid["data"]["name"]]
    assert data == [{"y": 50.0}]
    values = spec["datasets"][spec["layer"][1]["data"]["name"]]
    assert sorted(round(v["dial"]) for v in values) == [25, 50, 55, 60]


def test_cli_runs_streamlit_on_loopback() -> None:
    assert app_path().name == "app.py" and app_path().exists()
    command = streamlit_command(8599)
    assert command[1:4] == ["-m", "streamlit", "run"]
    joined = " ".join(command)
    for flag in (
        "--server.address 127.0.0.1",
        "--server.port 8599",
        "--server.headless true",
        "--browser.gatherUsageStats false",
    ):
        assert flag in joined
    help_text = CliRunner().invoke(dashboard_command, ["--help"]).output
    assert "Examples:" in help_text and "--db" in help_text and "--port" in help_text


def test_nothing_imports_the_dashboard() -> None:
    """The dashboard only reads: no project module may depend on it."""
    root = Path(queries.__file__).resolve().parent.parent
    pattern = re.compile(r"^\s*(from|import)\s+dashboard\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(root))
        for folder in ("stream", "models", "infra")
        for path in (root / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []


def test_health_shows_worker_dead_letters_by_reason_beside_sink_rejects(tmp_path):
    """The demo's dead letters were invisible (the tile counted 0 while 784 existed)."""
    from dashboard import queries
    from stream.store import connect
    from tests.factories import make_settings, populated_db

    settings = make_settings(tmp_path)
    populated_db(settings, n=10)  # + the poison corpus as the worker dead-letters it
    con = connect(settings.db_path, read_only=True)
    try:
        h = queries.health(queries.from_connection(con), "run-a", 60)
    finally:
        con.close()
    worker = h.dead_letters[h.dead_letters["stage"] == "worker"]
    assert int(worker["n"].sum()) == 18
    assert set(worker["reason"]) >= {"not valid JSON", "event_id", "scores record too large"}
    assert h.rejects == 1  # the sink's own reject: one undecodable scores record
