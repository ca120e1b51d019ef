"""swingdial dashboard: the minute-by-minute dial test of a live event, by voter cohort.

Run with ``swingdial dashboard``. Reads only (through :mod:`stream.query`); annotations an
analyst types here are produced to Kafka and reach DuckDB through the sink.

Layout: the sidebar picks the run (and an optional run to compare), live or replay mode,
time window, cohorts, whose approval to show (the person on air, or a pinned target) and
topic. The main column shows alerts, headline tiles (last complete minute), the approval
dial (0-100 per cohort, 95% band, grey points with too few stance posts, numbered moments),
the moment legend (speaker, title, paraphrase), mood (net sentiment), approval of every
target, volume, spikes with their drivers, the posts behind any minute, pipeline health,
exports and the annotation form.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import altair as alt
import pandas as pd
import pyarrow as pa
import streamlit as st

from dashboard import alerts, charts, data, onair, queries, spikes
from stream.config import get_settings

ALL = "(all)"
NONE = "(none)"
ON_AIR = "(person on air)"
HEALTH_WINDOW_MIN = 10  # health panel looks at the last minutes of arrivals
DRIVER_SPIKES = 5  # spikes whose drivers are computed (each costs two small queries)
SPIKE_SAMPLE_POSTS = 2000  # posts read from a spike's minute for its drivers
BASELINE_SAMPLE_POSTS = 4000  # posts read from the baseline minutes
DRILL_LIMIT = 300  # posts listed in the drill-down
MAX_ALERTS = 3  # banners per kind (approval moves, spikes), strongest first
LIVE_WINDOW_MIN = 60  # default span of the live view
ACTIVE_RUN_S = 120  # a run that stored posts this recently is live
REPLAY_CACHE_S = 600  # how long answers about a finished run are reused

settings = get_settings()
st.set_page_config(page_title="swingdial dial test", page_icon="📈", layout="wide")


# --------------------------------------------------------------------------- data access


@st.cache_data(ttl=settings.dashboard.refresh_s, max_entries=512, show_spinner=False)
def _cached(db: str, sql: str, params: tuple) -> pa.Table:
    """Query results, shared by reruns and sessions for one refresh period."""
    source = _source(db)
    if source.query is None:
        raise RuntimeError(source.problem)
    return source.query(sql, list(params) if params else None)


@st.cache_data(ttl=REPLAY_CACHE_S, max_entries=512, show_spinner=False)
def _cached_finished(db: str, sql: str, params: tuple) -> pa.Table:
    """The same for runs that stopped receiving posts: their answers no longer change."""
    return _cached(db, sql, params)


@st.cache_resource(show_spinner=False)
def _source_cached(db: str) -> data.Source:
    return data.open_source(settings)


def _source(db: str) -> data.Source:
    source = _source_cached(db)
    if source.query is None:  # not ready last time: look again (the sink may have started)
        _source_cached.clear()
        source = _source_cached(db)
    return source


def make_query(db: str, finished: bool = False) -> queries.Query:
    """Cached reads: one refresh period, or ``REPLAY_CACHE_S`` for a finished run."""
    cached = _cached_finished if finished else _cached

    def query(sql: str, params: list | None = None) -> pa.Table:
        return cached(db, sql, tuple(params or ()))

    return query


def waiting(problem: str) -> None:
    """No data yet: say so, and look again every refresh period."""
    st.title("swingdial: dial test")
    st.info(
        f"**Waiting for data.** {problem}\n\n"
        "Start the pipeline (for example `swingdial demo`), or point the dashboard at a "
        "database with `swingdial dashboard --db PATH`. This page checks again every "
        f"{settings.dashboard.refresh_s:g} s."
    )

    @st.fragment(run_every=settings.dashboard.refresh_s)
    def poll() -> None:
        source = _source(str(settings.db_path))
        if source.query is not None and not queries.runs(source.query).empty:
            st.rerun(scope="app")

    poll()
    st.stop()


def ts(value: object) -> pd.Timestamp:
    """A UTC timestamp from whatever Arrow/pandas handed back."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def naive(value: object) -> datetime:
    return ts(value).tz_localize(None).to_pydatetime()


# --------------------------------------------------------------------------- sidebar


def sidebar(query: queries.Query, runs: pd.DataFrame) -> dict:
    """All the page's choices (kept in session state by their widget keys)."""
    sb = st.sidebar
    sb.header("swingdial")
    labels = {
        r.run_id: f"{r.run_id} · {r.model_version or '?'} · {int(r.posts):,} posts"
        for r in runs.itertuples()
    }
    originals = [r.run_id for r in runs.itertuples() if pd.isna(r.replay_of)]
    default = list(labels).index(originals[0]) if originals else 0  # newest original run
    run_id: str = sb.selectbox(  # never None: the run list is not empty here
        "Run", list(labels), index=default, format_func=lambda r: labels[r], key="run"
    )
    others = [NONE, *[r for r in labels if r != run_id]]
    compare = sb.selectbox(
        "Compare with run",
        others,
        format_func=lambda r: r if r == NONE else labels[r],
        key="compare",
        help="Side-by-side dial test of a second run (a replay under another model, say).",
    )
    run = runs.set_index("run_id").loc[run_id]
    first, last = run["first_minute"], run["last_minute"]
    if pd.isna(first):
        waiting(f"Run `{run_id}` has no scored posts yet.")
    first, last = naive(first), naive(last)
    seen = run.get("last_seen_at")
    active = not pd.isna(seen) and datetime.now(UTC) - ts(seen) < timedelta(seconds=ACTIVE_RUN_S)
    mode = sb.radio(
        "Mode",
        ["replay", "live"],
        index=1 if active else 0,  # a run still receiving posts opens live
        key="mode",
        horizontal=True,
        help=f"live: follows the newest minute, refreshing every "
        f"{settings.dashboard.refresh_s:g} s. replay: scrub through a finished run.",
    )
    live_span = None
    if mode == "live":
        span = int((last - first).total_seconds() // 60) + 1
        minutes = sb.slider(
            "Show the last minutes",
            5,
            max(span, 5),
            min(LIVE_WINDOW_MIN, max(span, 5)),
            key="live_span",
        )
        window = (max(first, last - timedelta(minutes=minutes - 1)), last)
        live_span = minutes
    else:
        if first == last:
            window = (first, last)
        else:
            window = sb.slider(
                "Time window (UTC)",
                min_value=first,
                max_value=last,
                value=(first, last),
                step=timedelta(minutes=1),
                format="HH:mm",
                key=f"window:{run_id}",
            )
    present = queries.cohorts(query, run_id)
    options, _, _ = charts.cohort_style(present)
    cohorts = sb.multiselect(
        "Cohorts",
        options,
        # Every voter cohort, unplaced voters included (a thin grey line, so totals show);
        # media and spam accounts are not voters.
        default=[c for c in options if c != "unknown"],
        format_func=charts.cohort_label,
        key="cohorts",
    )
    target = sb.selectbox(
        "Approval of",
        [ON_AIR, *queries.targets(query, run_id)],
        key="target",
        help="By default the dial follows whoever is on air (the moment legend names them); "
        "pick a target to pin it.",
    )
    topic = sb.selectbox("Topic", [ALL, *queries.topics(query, run_id)], key="topic")
    return {
        "run_id": run_id,
        "run": run,
        "compare": None if compare == NONE else compare,
        "mode": mode,
        "active": active,
        "window": window,
        "live_span": live_span,
        "cohorts": tuple(cohorts) or tuple(options),
        "target": None if target == ON_AIR else target,
        "topic": None if topic == ALL else topic,
    }


# --------------------------------------------------------------------------- sections


def spike_table(query: queries.Query, f: queries.Filters, lines: pd.DataFrame) -> pd.DataFrame:
    """Spikes in the window, the strongest with their drivers."""
    found = spikes.detect(
        lines, spikes.SpikeParams(min_posts=settings.dashboard.min_posts_per_point)
    )
    if found.empty:
        return found
    params = spikes.SpikeParams()
    summaries, samples = [], []
    for i, spike in enumerate(found.itertuples()):
        if i >= DRIVER_SPIKES:
            summaries.append("")
            samples.append("")
            continue
        cohorts = f.cohorts if spike.cohort == "all" else (spike.cohort,)
        scope = f.with_(cohorts=cohorts, start=None, end=None)
        window = queries.posts(
            query, scope, ts(spike.peak_minute), limit=SPIKE_SAMPLE_POSTS, sample=True
        )
        before = scope.with_(
            start=ts(spike.minute) - timedelta(minutes=params.baseline_min),
            end=ts(spike.minute) - timedelta(minutes=1),
        )
        baseline = queries.posts(query, before, limit=BASELINE_SAMPLE_POSTS, sample=True)
        found_drivers = spikes.drivers(window, baseline, kind=spike.kind)
        summaries.append(found_drivers.summary())
        samples.append(" / ".join(found_drivers.samples[:2]))
    return found.assign(drivers=summaries, sample_posts=samples)


def drilldown(
    query: queries.Query,
    f: queries.Filters,
    clicked: pd.Timestamp | None,
    default: pd.Timestamp | None,
) -> None:
    """The posts behind one minute, filtered like the analyst asks.

    The minute starts at ``default`` (the strongest spike), follows a click on the dial when
    there is a new one, and otherwise stays where the analyst put it.
    """
    st.subheader("Drill-down: the posts behind a minute")
    minutes = queries.minutes_with_posts(query, f)
    if not minutes:
        st.caption("No posts in this window.")
        return
    labels = [m.strftime("%H:%M") for m in minutes]
    key = f"drill_minute:{f.run_id}:{labels[0]}:{labels[-1]}"
    click = clicked.strftime("%H:%M") if clicked is not None else None
    if click is not None and click in labels and click != st.session_state.get("drill_click"):
        st.session_state[key] = click
    elif key not in st.session_state:
        start = default.strftime("%H:%M") if default is not None else None
        st.session_state[key] = start if start in labels else labels[-1]
    st.session_state["drill_click"] = click
    c1, c2, c3, c4, c5 = st.columns(5)
    label = c1.selectbox("Minute (UTC)", labels, key=key, help="Or click a point in the dial.")
    cohort = c2.selectbox("Cohort", [ALL, *f.cohorts], key="drill_cohort", format_func=lambda c: c)
    sentiment = c3.selectbox(
        "Sentiment", [ALL, "negative", "neutral", "positive"], key="drill_sentiment"
    )
    target = c4.selectbox(
        "Stance target", [NONE, *queries.targets(query, f.run_id)], key="drill_target"
    )
    stance = c5.selectbox(
        "Stance",
        [ALL, "favor", "against", "none"],
        key="drill_stance",
        disabled=target == NONE,
    )
    minute = minutes[labels.index(label)]
    scope = f if cohort == ALL else f.with_(cohorts=(cohort,))
    rows = queries.posts(
        query,
        scope,
        minute,
        sentiment=None if sentiment == ALL else sentiment,
        target=None if target == NONE else target,
        stance=None if (stance == ALL or target == NONE) else stance,
        limit=DRILL_LIMIT,
    )
    st.caption(
        f"{len(rows)} posts at {label} UTC" + (" (first shown)" if len(rows) >= DRILL_LIMIT else "")
    )
    shown = rows.assign(time=rows["event_time"].dt.strftime("%H:%M:%S")).drop(
        columns=["event_time", "minute", "author_id", "post_id"], errors="ignore"
    )
    front = ["time", "cohort", "sentiment", "net_sentiment", "text"]
    st.dataframe(
        shown[[*front, *[c for c in shown.columns if c not in front]]],
        hide_index=True,
        key="drill_table",
        column_config={
            "net_sentiment": st.column_config.NumberColumn("net", format="%+.2f"),
            "text": st.column_config.TextColumn("text", width="large"),
        },
    )


def ago(age: timedelta) -> str:
    """'12 s ago', '5 min ago', '3 days ago': enough to tell live from finished."""
    seconds = age.total_seconds()
    if seconds < 120:
        return f"{seconds:,.0f} s ago"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:,.0f} h ago"
    return f"{seconds / 86400:,.0f} days ago"


def health_panel(query: queries.Query, run_id: str) -> None:
    """Is the pipeline keeping up? Short values in many tiles, so nothing is cut."""
    h = queries.health(query, run_id, HEALTH_WINDOW_MIN)
    lat = h.latency
    rate = float(h.ingest["posts"].mean()) if not h.ingest.empty else 0.0
    lag = h.sink.get("lag")
    fmt = lambda v: "-" if v is None else f"{v * 1000:,.0f} ms"  # noqa: E731
    row = st.columns(3)
    row[0].metric(
        "Ingest (posts/min)",
        f"{rate:,.0f}",
        help=f"mean over the last {HEALTH_WINDOW_MIN} minutes of arrivals",
    )
    row[1].metric(
        "Sink lag (records)",
        "-" if lag is None else f"{int(lag):,}",
        help="records on Kafka not yet stored",
    )
    row[2].metric("Sink rejects", "-" if h.rejects is None else f"{h.rejects:,}")
    latency = st.columns(4)
    latency[0].metric("Scoring p50", fmt(lat["score_p50_s"]), help="received -> scored")
    latency[1].metric("Scoring p95", fmt(lat["score_p95_s"]), help="received -> scored")
    latency[2].metric("End-to-end p50", fmt(lat["e2e_p50_s"]), help="received -> stored")
    latency[3].metric("End-to-end p95", fmt(lat["e2e_p95_s"]), help="received -> stored")
    if h.last_received_at is not None:
        age = datetime.now(UTC) - h.last_received_at.to_pydatetime()
        st.caption(f"Last post received {h.last_received_at:%Y-%m-%d %H:%M:%S} UTC ({ago(age)}).")
    left, right = st.columns([3, 2])
    if not h.ingest.empty:
        left.altair_chart(charts.ingest_chart(h.ingest), width="stretch")
    right.markdown("**Dead letters by reason**")
    if h.dead_letters.empty:
        right.caption("None stored.")
    else:
        right.markdown(
            "\n".join(
                f"- {r.stage}: {r.reason} — **{int(r.n):,}**" for r in h.dead_letters.itertuples()
            )
        )
    right.markdown("**Model versions**")
    right.markdown(
        "\n".join(f"- `{r.model_version}`: {int(r.posts):,} posts" for r in h.models.itertuples())
        or "-"
    )


def exports(chart: alt.TopLevelMixin, lines: pd.DataFrame, run_id: str) -> None:
    """CSV of the view's data; the chart as PNG (vl-convert) or, failing that, HTML."""
    stem = f"swingdial-{run_id}"
    c1, c2, c3 = st.columns(3)
    c1.download_button(
        "Download data (CSV)",
        lines.to_csv(index=False).encode(),
        file_name=f"{stem}-approval.csv",
        mime="text/csv",
        key="dl_csv",
    )
    c2.download_button(
        "Download chart (HTML)",
        chart.to_html().encode(),
        file_name=f"{stem}-dial.html",
        mime="text/html",
        key="dl_html",
    )
    if c3.button("Render chart as PNG", key="png_render"):
        try:
            buffer = io.BytesIO()
            chart.save(buffer, format="png", scale_factor=2)
            st.session_state["png"] = buffer.getvalue()
        except Exception as exc:  # noqa: BLE001 - vl-convert missing or failing: HTML remains
            c3.warning(f"PNG export unavailable ({exc}); use the HTML export.")
    if st.session_state.get("png"):
        c3.download_button(
            "Download chart (PNG)",
            st.session_state["png"],
            file_name=f"{stem}-dial.png",
            mime="image/png",
            key="dl_png",
        )


def annotation_form(run: pd.Series, run_id: str, minutes: list[pd.Timestamp]) -> None:
    """Pin a note to the timeline: produced to Kafka, stored by the sink."""
    with st.form("annotate", clear_on_submit=True):
        st.markdown("**Add an annotation** (goes to Kafka; appears once the sink stores it)")
        c1, c2, c3 = st.columns([1, 1, 4])
        labels = [m.strftime("%H:%M") for m in minutes] or ["-"]
        at = c1.selectbox("Minute (UTC)", labels, index=len(labels) - 1)
        author = c2.text_input("Author", value="analyst")
        text = c3.text_input("Note", max_chars=2000)
        if st.form_submit_button("Add annotation"):
            if not text.strip() or not minutes:
                st.warning("Write a note first.")
                return
            try:
                note = data.produce_annotation(
                    settings,
                    text=text.strip(),
                    at=minutes[labels.index(at)].to_pydatetime(),
                    author=author.strip(),
                    run_id=run_id,
                    event_id=run.get("event_id"),
                )
            except Exception as exc:  # noqa: BLE001 - any Kafka failure is shown, nothing else breaks
                st.error(
                    f"Kafka is unreachable at `{settings.kafka.bootstrap}`: the annotation was "
                    f"not saved ({type(exc).__name__}: {exc}). The rest of the dashboard "
                    "keeps working."
                )
            else:
                st.success(f"Annotation {note.id} sent to `{settings.topic.annotations}`.")


# --------------------------------------------------------------------------- page


def moment_legend(moments: pd.DataFrame, marks: pd.DataFrame) -> None:
    """The numbers on the charts, spelled out: time, who is on air, title, what was said."""
    rows = [
        "| # | UTC | on air | moment | what was said (paraphrase) |",
        "|---|---|---|---|---|",
    ]
    cell = lambda text: str(text).replace("|", "/").replace("\n", " ")  # noqa: E731
    for m in moments.itertuples():
        rows.append(
            f"| **{m.number}** | {ts(m.at_time):%H:%M} | {cell(m.speaker) or '—'} | "
            f"{cell(m.label)} | {cell(m.quote)} |"
        )
    notes = marks[marks["kind"] == "annotation"] if not marks.empty else marks
    for a in notes.itertuples():
        rows.append(
            f"| **{a.number}** | {ts(a.at_time):%H:%M} | note by {cell(a.author)} | "
            f"{cell(a.label)} | |"
        )
    if len(rows) > 2:
        with st.expander("Moments and notes on the charts (numbers)", expanded=True):
            st.markdown("\n".join(rows))


def numbered_markers(
    query: queries.Query, f: queries.Filters, run: pd.Series, targets: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All markers of the run, numbered over the whole event (numbers stay put when the
    window moves), and the moments with speaker / quote / target on air."""
    every = queries.markers(query, f.with_(start=None, end=None))
    moments = onair.numbered_moments(every, onair.event_speakers(run.get("event_id")), targets)
    number = dict(zip(moments["id"], moments["number"].astype(str), strict=True))
    notes = every[every["kind"] == "annotation"]
    number |= {i: f"A{k + 1}" for k, i in enumerate(notes["id"])}
    every = every.assign(number=every["id"].map(number).fillna(""))
    return every, moments


def in_window(frame: pd.DataFrame, column: str, f: queries.Filters) -> pd.DataFrame:
    """Rows of ``frame`` whose ``column`` falls in the filter's window (a minute of slack)."""
    if frame.empty:
        return frame
    t = pd.to_datetime(frame[column], utc=True)
    keep = pd.Series(True, index=frame.index)
    if f.start is not None:
        keep &= t >= ts(f.start) - timedelta(minutes=1)
    if f.end is not None:
        keep &= t <= ts(f.end) + timedelta(minutes=1)
    return frame[keep]


def headline(
    approval: pd.DataFrame, complete: pd.Timestamp, partial: pd.Timestamp | None, who: str
) -> None:
    """Tiles: each cohort's approval at the last complete minute, with n and the interval."""
    done = approval[approval["minute"] == complete]
    st.markdown(
        f"**Approval of {who}** at **{complete:%H:%M} UTC** (last complete minute), 0-100, "
        "50 = evenly split; change over the previous 5 minutes."
    )
    shown = [
        c
        for c in charts.cohort_style(list(approval["cohort"].unique()))[0]
        if c in set(done["cohort"])
    ]
    cols = st.columns(max(len(shown), 1))
    for col, cohort in zip(cols, shown, strict=False):
        row = done[done["cohort"] == cohort].iloc[0]
        before = approval[
            (approval["cohort"] == cohort)
            & (approval["minute"] == complete - timedelta(minutes=5))
            & ~approval["low_n"]
        ]
        value = queries.dial(row["approval"])
        delta = None
        if not before.empty and not pd.isna(value) and not row["low_n"]:
            delta = f"{value - queries.dial(before['approval'].iloc[0]):+.0f} pts"
        col.metric(
            charts.cohort_label(cohort),
            "-" if pd.isna(value) else f"{value:.0f}",
            delta,
            help=f"approval of {row['target']}",
        )
        lo, hi = queries.dial(row["lo"]), queries.dial(row["hi"])
        band = "" if pd.isna(lo) else f" · 95% {lo:.0f}–{hi:.0f}"
        low = " · too few to trust" if row["low_n"] else ""
        col.caption(f"n = {int(row['n_stance'])} stance posts{band}{low}")
    if partial is not None:
        now = approval[approval["minute"] == partial]
        parts = [
            f"{charts.cohort_label(r.cohort)} {queries.dial(r.approval):.0f} (n = {r.n_stance})"
            for r in now.itertuples()
            if not pd.isna(r.approval)
        ]
        st.caption(
            f"Current minute {partial:%H:%M} UTC is **partial** (still filling): "
            + ("; ".join(parts) or "no stance posts yet")
        )


def alert_banner(
    query: queries.Query,
    f: queries.Filters,
    approval: pd.DataFrame,
    spike_rows: pd.DataFrame,
    complete: pd.Timestamp,
) -> None:
    """Banners for fast approval moves and fresh spikes, with drivers and sample posts; new
    ones also go to the webhook (once each per session)."""
    params = alerts.AlertParams(
        points=settings.dashboard.alert_approval_points,
        window_min=settings.dashboard.alert_window_min,
        min_stance=settings.dashboard.min_posts_per_point,
    )
    upto = approval[approval["minute"] <= complete]
    found = alerts.approval_moves(upto, params)[:MAX_ALERTS]
    for alert in found:
        scope = f.with_(cohorts=(alert.cohort,), start=None, end=None)
        stance = "favor" if alert.kind == "approval_rise" else "against"
        window = queries.posts(
            query, scope, alert.minute, target=alert.target, limit=SPIKE_SAMPLE_POSTS, sample=True
        )
        base = scope.with_(start=alert.since, end=alert.since)
        baseline = queries.posts(query, base, limit=BASELINE_SAMPLE_POSTS, sample=True)
        why = spikes.drivers(window[window["stance"] == stance], baseline)
        alert.drivers = why.summary()
        alert.samples = why.samples[:2]
    found += alerts.spike_alerts(spike_rows, complete, params.window_min)[:MAX_ALERTS]
    for alert in found:
        samples = "".join(f"\n> {p}" for p in alert.samples)
        st.warning(f"**{alert.headline()}**  \nDrivers: {alert.drivers or '-'}{samples}")
    sent = st.session_state.setdefault("alerts_sent", set())
    fresh = [a for a in found if a.key not in sent]
    if settings.dashboard.alert_webhook and fresh:
        try:
            alerts.post_webhook(settings.dashboard.alert_webhook, f.run_id, fresh)
        except OSError as exc:
            st.caption(f"Alert webhook failed ({type(exc).__name__}: {exc}); will retry.")
        else:
            sent.update(a.key for a in fresh)


def page(query: queries.Query, choice: dict) -> None:
    """Everything right of the sidebar (re-run alone every refresh period in live mode)."""
    run_id, run = choice["run_id"], choice["run"]
    start, end = choice["window"]
    if choice["mode"] == "live":  # follow the newest minute on every refresh
        fresh = queries.runs(query).set_index("run_id")
        if run_id in fresh.index and not pd.isna(fresh.loc[run_id, "last_minute"]):
            end = naive(fresh.loc[run_id, "last_minute"])
            start = max(
                naive(fresh.loc[run_id, "first_minute"]),
                end - timedelta(minutes=choice["live_span"] - 1),
            )
    playhead = None
    if choice["mode"] == "replay" and end > start:
        playhead = st.slider(
            "Replay: scrub through the run (UTC)",
            min_value=start,
            max_value=end,
            value=end,
            step=timedelta(minutes=1),
            format="HH:mm",
            key=f"playhead:{run_id}:{start:%H%M}:{end:%H%M}",
        )
    shown_end = playhead or end
    domain = (start, end)  # the axis keeps the whole window; replay fills it up to the playhead
    if playhead is not None and playhead >= end:
        playhead = None  # at the end there is nothing to mark
    f = queries.Filters(
        run_id,
        start=ts(start),
        end=ts(shown_end),
        cohorts=choice["cohorts"],
        topic=choice["topic"],
    )
    alerts_slot = st.container()  # filled once the spikes are known, shown above the tiles
    min_n = settings.dashboard.min_posts_per_point
    lines = queries.cohort_lines(query, f, min_n)
    if lines.empty:
        st.info("No posts match these filters in this window.")
        return
    targets = queries.targets(query, run_id)
    every, moments = numbered_markers(query, f, run, targets)
    marks = in_window(every, "at_time", f)
    pinned = choice["target"]
    default = targets[0] if targets else None
    all_approval = queries.approval_lines(query, f, min_n)
    if pinned:
        approval = all_approval[all_approval["target"] == pinned].reset_index(drop=True)
        who = pinned
    else:
        approval = onair.follow_on_air(all_approval, moments, default)
        who = "the person on air"

    # The newest minute of a run still receiving posts is partial: tiles and alerts skip it.
    newest = ts(lines["minute"].max())
    at_edge = playhead is None and ts(shown_end) >= ts(end)
    partial = newest if (choice["active"] and at_edge) else None
    complete = newest - timedelta(minutes=1) if partial is not None else newest
    if not approval.empty:
        on_air_now = approval.loc[approval["minute"] == complete, "target"]
        if not pinned and not on_air_now.empty:
            who = f"{on_air_now.iloc[0]} (on air)"
        headline(approval, complete, partial, who)

    sizes = queries.cohort_sizes(query, f)
    size_labels = {
        r.cohort: f"{charts.cohort_label(r.cohort)} ({int(r.authors):,} authors, "
        f"{int(r.posts):,} posts)"
        for r in sizes.itertuples()
    }
    title = f"Approval of {pinned} by cohort" if pinned else "Approval of the person on air"
    dial = charts.approval_chart(
        approval,
        marks,
        title=f"{title} (0-100, 50 = split)",
        cohort_labels=size_labels,
        playhead=playhead,
        domain=domain,
    )
    picked = None
    if choice["compare"]:
        other = f.with_(run_id=choice["compare"])
        left, right = st.columns(2)
        with left:
            event = st.altair_chart(dial, width="stretch", on_select="rerun", key="dial")
        other_all = queries.approval_lines(query, other, min_n)
        other_approval = (
            other_all[other_all["target"] == pinned]
            if pinned
            else onair.follow_on_air(other_all, moments, default)
        )
        with right:
            if other_approval.empty:
                st.info(f"Run {choice['compare']} has no posts in this window.")
            else:
                st.altair_chart(
                    charts.approval_chart(
                        other_approval,
                        marks,
                        title=f"Compared: {choice['compare']}",
                        selectable=False,
                        playhead=playhead,
                        domain=domain,
                    ),
                    width="stretch",
                    key="dial_compare",
                )
    else:
        event = st.altair_chart(dial, width="stretch", on_select="rerun", key="dial")
    selection = getattr(event, "selection", None) or {}
    pick = selection.get("pick") if hasattr(selection, "get") else None
    if pick:
        picked = pd.to_datetime(pick[0].get("minute"), unit="ms", utc=True)
    st.caption(
        "Approval = favor vs against among posts that take a stance toward the person "
        "(probability-weighted; posts with no stance are left out), 50 = evenly split. "
        "Thick purple: moderate / undecided; thin grey: cohorts without a call. Shaded: 95% "
        f"interval. Grey points: fewer than {min_n} stance posts (not trusted, not joined). "
        "Numbered rules: moments (grey) and notes (orange), listed below. The topic filter "
        "does not apply here. Click a point to drill down."
    )
    moment_legend(in_window(moments, "at_time", f), marks)

    # The secondary charts: no title, legend or click selection (the dial has them).
    secondary: dict[str, Any] = {
        "title": "",
        "selectable": False,
        "legend": False,
        "playhead": playhead,
        "domain": domain,
    }
    st.subheader("Mood: net sentiment by cohort")
    mood = charts.dial_chart(
        lines, marks, y_title="net sentiment (pos - neg)", height=320, **secondary
    )
    st.altair_chart(mood, width="stretch", key="mood")
    st.caption(
        "Mood is not approval: people post angry words about the outage while "
        "approving of the speaker. Same colours as the dial."
    )

    if not all_approval.empty:
        st.subheader("Approval of each target")
        shown_targets = sorted(all_approval["target"].unique())
        cols = st.columns(len(shown_targets))
        for col, target in zip(cols, shown_targets, strict=True):
            col.markdown(f"**{target}**")
            col.altair_chart(
                charts.approval_chart(
                    all_approval[all_approval["target"] == target], marks, height=280, **secondary
                ),
                width="stretch",
            )

    st.altair_chart(
        charts.volume_chart(queries.volume(query, f), marks, playhead, domain), width="stretch"
    )

    st.subheader("Spikes")
    table = spike_table(query, f, lines)
    default_minute = None
    if table.empty:
        st.caption("No minute stands out from its own last minutes.")
    else:
        shown = table.assign(
            minute=table["minute"].map(lambda m: ts(m).strftime("%H:%M")),
            peak_minute=table["peak_minute"].map(lambda m: ts(m).strftime("%H:%M")),
        ).drop(columns=["until"])
        first = ["minute", "cohort", "kind", "magnitude", "drivers", "sample_posts"]
        shown = shown[[*first, *[c for c in shown.columns if c not in first]]]
        st.dataframe(
            shown,
            hide_index=True,
            key="spikes",
            column_config={
                "magnitude": st.column_config.NumberColumn("robust z", format="%.1f"),
                "value": st.column_config.NumberColumn(format="%.2f"),
                "baseline": st.column_config.NumberColumn(format="%.2f"),
            },
        )
        default_minute = ts(table.iloc[0]["peak_minute"])
    with alerts_slot:
        alert_banner(query, f, approval, table, complete)

    drilldown(query, f, picked, default_minute)

    # A toggle, not an expander: a closed expander still runs its queries.
    if st.toggle("Pipeline health", value=choice["mode"] == "live", key=f"health:{choice['mode']}"):
        health_panel(query, run_id)

    st.subheader("Export and annotate")
    exports(dial, approval, run_id)
    annotation_form(run, run_id, queries.minutes_with_posts(query, f))


def main() -> None:
    db = str(settings.db_path)
    source = _source(db)
    if source.query is None:
        waiting(source.problem or "")
    query = make_query(db)
    runs = queries.runs(query)
    if runs.empty or runs["posts"].fillna(0).sum() == 0:
        waiting(f"The database at `{db}` has no scored posts yet.")
    choice = sidebar(query, runs)
    st.title("Dial test: how each cohort reacts, minute by minute")
    live = choice["mode"] == "live"
    if not (live or choice["active"]):
        query = make_query(db, finished=True)
    body = st.fragment(page, run_every=settings.dashboard.refresh_s if live else None)
    body(query, choice)


main()
