"""The real dashboard in a real browser: `swingdial dashboard` + Debian's headless chromium.

Needs ``apt-get install chromium`` (Playwright's own browser downloads are not used). The
page is checked at 1280 and 1920 px: the approval dial comes first, and no label is cut
(no "…", nothing outside its chart, no overflowing tile). ``SWINGDIAL_SCREENSHOT_DIR`` keeps
the screenshots.

``pytest -m demo tests/dashboard/test_dashboard_browser.py`` (opt-in, a few minutes: it
runs the whole live demo) checks the same at both widths on the real demo and takes the README's
screenshot, ``docs/img/dashboard.png``, from it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_db import build_test_db

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
README_SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
STARTUP_TIMEOUT_S = 90
DEMO_WARMUP_S = 150
RENDER_TIMEOUT_MS = 90_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def swingdial_cli() -> list[str]:
    script = Path(sys.executable).parent / "swingdial"
    return [str(script)] if script.exists() else [sys.executable, "-m", "stream.cli"]


@pytest.fixture(scope="module")
def dashboard_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`swingdial dashboard` on a free port, reading a fixture database."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    tmp = tmp_path_factory.mktemp("browser")
    db = build_test_db(tmp / "fx.duckdb", minutes=120)
    port = free_port()
    env = {
        **os.environ,
        "SWINGDIAL_QUERY_PORT": str(free_port()),  # no Flight server: read the file
        "SWINGDIAL_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
    }
    log = (tmp / "dashboard.log").open("wb")
    proc = subprocess.Popen(
        [*swingdial_cli(), "dashboard", "--port", str(port), "--db", str(db)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dashboard exited: {(tmp / 'dashboard.log').read_text()}")
            try:
                with urllib.request.urlopen(url + "_stcore/health", timeout=2) as answer:
                    if answer.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("dashboard did not answer on /_stcore/health")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()  # `swingdial dashboard` exec'd streamlit: this is its pid
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def posts_caption(page) -> int:  # noqa: ANN001 - playwright Page
    text = page.get_by_text(re.compile(r"^\d+ posts at \d\d:\d\d UTC")).first.inner_text()
    return int(text.split()[0])


def caption_minute(page) -> str:  # noqa: ANN001 - playwright Page
    text = page.get_by_text(re.compile(r"^\d+ posts at \d\d:\d\d UTC")).first.inner_text()
    return text.split(" at ")[1][:5]


def wait_idle(page) -> None:  # noqa: ANN001 - playwright Page
    """Until Streamlit's "running" widget is gone and the charts have settled."""
    page.wait_for_timeout(500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)
    page.wait_for_timeout(1500)


def choose(page, label: str, option: str) -> None:  # noqa: ANN001 - playwright Page
    """Pick ``option`` in the first Streamlit selectbox labelled ``label``."""
    box = page.get_by_role("combobox", name=label).first
    box.click()
    box.fill(option)  # filters the (virtualised) option list
    page.get_by_role("option", name=option, exact=True).first.click()


CUT_LABELS_JS = """
() => {
  const bad = [];
  for (const t of document.querySelectorAll('.vega-embed svg text')) {
    if ((t.textContent || '').includes('\\u2026')) bad.push('chart: ' + t.textContent);
  }
  const cells = '[data-testid="stMetricValue"], [data-testid="stMetricLabel"], '
    + '[data-testid="stCaptionContainer"], [data-testid="stMarkdownContainer"] td';
  for (const el of document.querySelectorAll(cells)) {
    if (el.scrollWidth > el.clientWidth + 1) bad.push('text: ' + el.textContent);
  }
  return bad;
}
"""  # Vega shortens a label that does not fit with an ellipsis; HTML text overflows its box
WIDTHS = (1280, 1920)
PAGE_HEIGHT = 4400  # Streamlit scrolls inside its own container: show the whole page


# approval dial + mood + approval of 3 targets + volume
ANALYST_CHARTS = 6


def open_page(browser, url: str, width: int, charts: int = ANALYST_CHARTS):  # noqa: ANN001, ANN201
    """The dashboard at ``width`` once its ``charts`` charts have rendered."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": width, "height": PAGE_HEIGHT})
    page.goto(url)
    page.wait_for_selector(".vega-embed svg", timeout=RENDER_TIMEOUT_MS)
    expect(page.locator(".vega-embed")).to_have_count(charts, timeout=RENDER_TIMEOUT_MS)
    wait_idle(page)
    return page


def test_dashboard_in_chromium(dashboard_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("SWINGDIAL_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for width in WIDTHS:
                page = open_page(browser, dashboard_url, width)
                dial = page.locator(".vega-embed").first
                # the approval dial comes first: 0-100 axis, cohorts with sizes, moment numbers
                expect(dial).to_contain_text("Approval of the person on air")
                expect(dial).to_contain_text("approval (0-100)")
                expect(dial).to_contain_text("moderate / undecided (")
                assert dial.locator("path").count() > 20
                texts = dial.locator("text").evaluate_all("els => els.map(e => e.textContent)")
                assert {"1", "2", "3"} <= set(texts)  # moment numbers
                legend = page.locator('[data-testid="stMarkdownContainer"] table').first
                expect(legend).to_contain_text("Musk blames a DDoS attack")
                expect(legend).to_contain_text("Elon Musk")
                expect(page.get_by_text("last complete minute")).to_be_visible()
                page.get_by_text("Pipeline health").click()
                expect(page.get_by_text("Dead letters by reason")).to_be_visible(timeout=60_000)
                wait_idle(page)
                page.screenshot(path=str(shots / f"dashboard-{width}.png"), full_page=True)
                cut = page.evaluate(CUT_LABELS_JS)
                assert cut == [], f"cut or overflowing labels at {width} px: {cut}"
                assert (shots / f"dashboard-{width}.png").stat().st_size > 50_000
                page.close()

            page = open_page(browser, dashboard_url, 1500)
            dial = page.locator(".vega-embed").first
            # drill-down: posts of the default minute, then only the negative ones at 00:20
            expect(page.get_by_text(re.compile(r"^\d+ posts at"))).to_be_visible()
            assert posts_caption(page) > 0

            # clicking a point of the dial drills into that minute
            before = caption_minute(page)
            points = dial.locator("g.mark-symbol path")
            assert points.count() > 100
            points.nth(100).click(force=True)
            deadline = time.monotonic() + 30
            while caption_minute(page) == before and time.monotonic() < deadline:
                page.wait_for_timeout(300)
            assert caption_minute(page) != before and posts_caption(page) > 0
            choose(page, "Minute (UTC)", "00:20")
            expect(page.get_by_text(re.compile(r"posts at 00:20 UTC"))).to_be_visible(
                timeout=30_000
            )
            all_posts = posts_caption(page)
            choose(page, "Sentiment", "negative")
            page.wait_for_timeout(500)
            expect(page.get_by_text(re.compile(r"posts at 00:20 UTC"))).to_be_visible(
                timeout=30_000
            )
            deadline = time.monotonic() + 30
            while posts_caption(page) == all_posts and time.monotonic() < deadline:
                page.wait_for_timeout(300)
            negative = posts_caption(page)
            assert 0 < negative < all_posts
            cells = page.locator('[data-testid="stDataFrame"] [role="gridcell"]')
            texts = " ".join(cells.all_inner_texts())
            assert "negative" in texts and "positive" not in texts
        finally:
            browser.close()


@pytest.mark.demo
def test_the_real_demo_at_two_widths_gives_the_readme_screenshot(tmp_path: Path) -> None:
    """`swingdial demo` (broker, worker, sink, simulator, dashboard) as an analyst sees it
    after a few minutes: the dial of the person on air first, no cut label at either width."""
    import signal

    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SWINGDIAL_")},
        "SWINGDIAL_HOME": str(tmp_path / "home"),
        "SWINGDIAL_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "SWINGDIAL_KAFKA_CONTROLLER_PORT": str(free_port()),
        "SWINGDIAL_QUERY_PORT": str(free_port()),
        "SWINGDIAL_DASHBOARD_PORT": str(port),
    }
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        [*swingdial_cli(), "demo", "--speed", "30"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    shots = Path(os.environ.get("SWINGDIAL_SCREENSHOT_DIR", tmp_path))
    try:
        time.sleep(DEMO_WARMUP_S)  # ~60 event minutes at --speed 30
        assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                for width in WIDTHS:
                    # live mode turns the pipeline-health panel on: its ingest chart too
                    url = f"http://127.0.0.1:{port}/"
                    page = open_page(browser, url, width, charts=ANALYST_CHARTS + 1)
                    dial = page.locator(".vega-embed").first
                    expect(dial).to_contain_text("Approval of the person on air")
                    expect(dial).to_contain_text("moderate / undecided (")
                    expect(page.get_by_text("last complete minute")).to_be_visible()
                    page.screenshot(path=str(shots / f"demo-{width}.png"))
                    cut = page.evaluate(CUT_LABELS_JS)
                    assert cut == [], f"cut or overflowing labels at {width} px: {cut}"
                    page.close()
            finally:
                browser.close()
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shots / "demo-1280.png", README_SHOT)
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
        log.close()
