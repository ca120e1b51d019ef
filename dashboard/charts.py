"""Altair charts of the dashboard (pure: frames in, charts out, so they can be tested alone).

Times are shown as UTC wall-clock: tz-aware minutes become naive UTC before charting, so
Vega-Lite (which would convert to the viewer's zone) shows the event's own clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import altair as alt
import pandas as pd

from dashboard.queries import dial
from models.cohort import COHORTS

# Cohort presentation in one place: legend order, colour, line weight, label (the names
# come from models/cohort.py). Voters without positive evidence ("unplaced") are a thin
# grey line, so totals stay visible; any other cohort name is drawn after these, grey too.
COHORT_ORDER = list(COHORTS)
COHORT_COLORS = ["#6a1b9a", "#1f77b4", "#d62728", "#9e9e9e", "#cfcfcf"]
COHORT_WIDTHS = [4.5, 1.8, 1.8, 1.0, 1.0]
COHORT_LABELS = {
    "moderate": "moderate / undecided",
    "lean_left": "lean left",
    "lean_right": "lean right",
    "unplaced": "unplaced voters",
    "unknown": "media / spam",
}
OTHER_COHORT_COLORS = ["#757575", "#bdbdbd", "#616161"]
OTHER_COHORT_WIDTH = 1.0


def cohort_style(cohorts: list[str] | None = None) -> tuple[list[str], list[str], list[float]]:
    """Domain, colours and widths for the known cohorts plus any extra names in ``cohorts``."""
    extra = sorted({str(c) for c in cohorts or []} - set(COHORT_ORDER))
    greys = [OTHER_COHORT_COLORS[i % len(OTHER_COHORT_COLORS)] for i in range(len(extra))]
    return (
        [*COHORT_ORDER, *extra],
        [*COHORT_COLORS, *greys],
        [*COHORT_WIDTHS, *[OTHER_COHORT_WIDTH] * len(extra)],
    )


def cohort_label(cohort: str) -> str:
    return COHORT_LABELS.get(cohort, cohort.replace("_", " "))


LOW_N_COLOR = "#c8c8c8"
MOMENT_COLOR = "#555555"
ANNOTATION_COLOR = "#ef6c00"
PLAYHEAD_COLOR = "#000000"
# What the chart builders return (altair types a layer with .properties() as either).
Layered = alt.LayerChart | alt.FacetChart
TIME_FORMAT = "%H:%M"


def utc_naive(values: pd.Series) -> pd.Series:
    """Tz-aware timestamps -> naive UTC (see the module docstring)."""
    values = pd.to_datetime(values)
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values


def _cohort_color(
    legend: bool = True,
    shown: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> alt.Color:
    """Colour by cohort; ``labels`` (cohort -> legend text) can carry sizes, e.g. "n = 40"."""
    domain, colors, _ = cohort_style(shown)
    names = {c: cohort_label(c) for c in domain} | (labels or {})
    return alt.Color(
        "cohort:N",
        scale=alt.Scale(domain=domain, range=colors),
        sort=domain,
        legend=alt.Legend(
            title=None,
            orient="top",
            symbolType="stroke",
            symbolOpacity=1,
            symbolStrokeWidth=4,
            values=shown if shown is not None else alt.Undefined,
            labelLimit=0,
            labelFontSize=12,
            columns=0,
            labelExpr=" : ".join(f"datum.value == {_js(k)} ? {_js(v)}" for k, v in names.items())
            + " : datum.value",
        )
        if legend
        else None,
    )


def _js(text: str) -> str:
    """A JavaScript string literal for Vega expressions."""
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


Domain = tuple[datetime, datetime] | None  # x range to show (naive UTC); None: the data's


def _dt(value: datetime) -> alt.DateTime:
    v = pd.Timestamp(value)
    return alt.DateTime(
        year=v.year, month=v.month, date=v.day, hours=v.hour, minutes=v.minute, seconds=v.second
    )


def _x(title: str = "minute (UTC)", domain: Domain = None) -> alt.X:
    scale = alt.Scale(domain=[_dt(domain[0]), _dt(domain[1])]) if domain else alt.Undefined
    return alt.X(
        "minute:T",
        title=title,
        scale=scale,
        axis=alt.Axis(format=TIME_FORMAT, labelOverlap="greedy", labelFlush=True),
    )


def thin_labels(times: pd.Series, min_gap: pd.Timedelta) -> pd.Series:
    """True for labels at least ``min_gap`` after the previous kept one (no overprinting)."""
    keep, last = [], None
    for t in times:
        ok = last is None or t - last >= min_gap
        keep.append(ok)
        last = t if ok else last
    return pd.Series(keep, index=times.index)


def marker_layers(
    markers: pd.DataFrame | None,
    playhead: datetime | None = None,
    labels: bool = True,
    domain: Domain = None,
) -> list[alt.Chart]:
    """Dashed rules for moments (grey) and annotations (orange), each with its number at the
    top (moments 1, 2, ...; annotations A1, ...: the legend under the dial names them), and
    the replay playhead. Numbers too close to the previous one are left out, never cut."""
    layers: list[alt.Chart] = []
    if markers is not None and not markers.empty:
        number = markers["number"] if "number" in markers else pd.Series("", index=markers.index)
        data = markers.assign(at_time=utc_naive(markers["at_time"]), number=number.astype(str))[
            ["kind", "at_time", "label", "number", "author"]
        ].astype({"author": "string"})
        data = data.sort_values("at_time")
        span = (
            pd.Timestamp(domain[1]) - pd.Timestamp(domain[0])
            if domain
            else data["at_time"].max() - data["at_time"].min()
        )
        gap = max(span / 60, pd.Timedelta(seconds=30))
        # Fixed colours per layer (a shared colour scale would merge with the cohorts').
        for kind, color in (("moment", MOMENT_COLOR), ("annotation", ANNOTATION_COLOR)):
            subset = data[data["kind"] == kind]
            if subset.empty:
                continue
            subset = subset.assign(labelled=thin_labels(subset["at_time"], gap))
            tooltip = [
                alt.Tooltip("number:N", title="#"),
                alt.Tooltip("at_time:T", format=TIME_FORMAT, title="at (UTC)"),
                alt.Tooltip("label:N", title=kind),
                alt.Tooltip("author:N"),
            ]
            layers.append(
                alt.Chart(subset)
                .mark_rule(strokeDash=[4, 3], strokeWidth=1.2, color=color)
                .encode(x="at_time:T", tooltip=tooltip)
            )
            shown = subset[subset["labelled"] & (subset["number"] != "")]
            if not labels or shown.empty:
                continue
            layers.append(
                alt.Chart(shown)
                .mark_text(
                    align="left",
                    baseline="top",
                    dx=3,
                    dy=2 if kind == "moment" else 16,
                    fontSize=12,
                    fontWeight="bold",
                    color=color,
                )
                .encode(x="at_time:T", y=alt.value(0), text="number:N", tooltip=tooltip)
            )
    if playhead is not None:
        ph = pd.DataFrame({"at_time": utc_naive(pd.Series([pd.Timestamp(playhead)]))})
        layers.append(
            alt.Chart(ph).mark_rule(color=PLAYHEAD_COLOR, strokeWidth=2).encode(x="at_time:T")
        )
    return layers


def dial_chart(
    lines: pd.DataFrame,
    markers: pd.DataFrame | None = None,
    *,
    value: str = "net_sentiment",
    low: str = "ci_low",
    high: str = "ci_high",
    n: str = "n",
    title: str = "Net sentiment by cohort",
    y_title: str = "net sentiment",
    y_domain: tuple[float, float] = (-1.0, 1.0),
    y_format: str = "+.2f",
    middle: float = 0.0,
    extra_tooltip: list[alt.Tooltip] | None = None,
    cohort_labels: dict[str, str] | None = None,
    playhead: datetime | None = None,
    height: int = 460,  # total, including legend and axes
    selectable: bool = True,
    labels: bool = True,
    legend: bool = True,
    domain: Domain = None,
) -> Layered:
    """A line per cohort with its 95% band; grey points have too few posts (``low_n``)."""
    data = lines.assign(
        minute=utc_naive(lines["minute"]),
        low_n=lines["low_n"].astype(bool),
        cohort_label=lines["cohort"].map(cohort_label),
    )
    extra = [cast(dict, t.to_dict())["field"] for t in extra_tooltip or []]
    keep = ["minute", "cohort", "cohort_label", value, low, high, n, "low_n", *extra]
    data = data[list(dict.fromkeys(keep))]
    present = sorted(set(data["cohort"]))
    order, _, widths = cohort_style(present)
    shown = [c for c in order if c in present]
    color = _cohort_color(legend, shown, cohort_labels)
    y_scale = alt.Scale(domain=list(y_domain), clamp=True)
    base = alt.Chart(data).encode(x=_x(domain=domain))
    band = (
        base.mark_area(opacity=0.13)
        .encode(y=alt.Y(f"{low}:Q", scale=y_scale, title=y_title), y2=f"{high}:Q", color=color)
        .transform_filter("!datum.low_n")
    )
    line = (
        base.mark_line(interpolate="monotone")
        .encode(
            y=alt.Y(f"{value}:Q", scale=y_scale),
            color=color,
            strokeWidth=alt.StrokeWidth(
                "cohort:N", scale=alt.Scale(domain=order, range=widths), legend=None
            ),
            order=alt.Order("minute:T"),
        )
        .transform_filter("!datum.low_n")
    )
    tooltip = [
        alt.Tooltip("minute:T", format=TIME_FORMAT, title="minute (UTC)"),
        alt.Tooltip("cohort_label:N", title="cohort"),
        *(extra_tooltip or []),
        alt.Tooltip(f"{value}:Q", format=y_format, title=y_title),
        alt.Tooltip(f"{n}:Q", title="posts in point"),
        alt.Tooltip(f"{low}:Q", format=y_format, title="95% low"),
        alt.Tooltip(f"{high}:Q", format=y_format, title="95% high"),
        alt.Tooltip("low_n:N", title="too few posts"),
    ]
    points = base.mark_circle(size=26, opacity=0.9).encode(
        y=alt.Y(f"{value}:Q", scale=y_scale),
        color=alt.condition("datum.low_n", alt.value(LOW_N_COLOR), color),
        tooltip=tooltip,
    )
    if selectable:
        points = points.add_params(
            alt.selection_point(name="pick", fields=["minute"], on="click", nearest=True)
        )
    mid = (
        alt.Chart(pd.DataFrame({"y": [middle]}))
        .mark_rule(color="#999", strokeWidth=0.7)
        .encode(y=alt.Y("y:Q", scale=y_scale))
    )
    return alt.layer(
        mid, band, line, points, *marker_layers(markers, playhead, labels, domain)
    ).properties(title=title, height=height)


def approval_chart(
    approval: pd.DataFrame,
    markers: pd.DataFrame | None = None,
    *,
    title: str = "Approval by cohort",
    **kwargs: Any,
) -> Layered:
    """The approval dial: 0-100 (50 = split) per cohort, Wilson band, n = stance posts."""
    data = approval.assign(
        dial=dial(approval["approval"]), dial_lo=dial(approval["lo"]), dial_hi=dial(approval["hi"])
    )
    return dial_chart(
        data,
        markers,
        value="dial",
        low="dial_lo",
        high="dial_hi",
        n="n_stance",
        title=title,
        y_title="approval (0-100)",
        y_domain=(0.0, 100.0),
        y_format=".0f",
        middle=50.0,
        extra_tooltip=[
            alt.Tooltip("target:N", title="approval of"),
            alt.Tooltip("n_posts:Q", title="posts about target"),
        ],
        **kwargs,
    )


def volume_chart(
    volume: pd.DataFrame,
    markers: pd.DataFrame | None = None,
    playhead: datetime | None = None,
    domain: Domain = None,
) -> Layered:
    """Posts per minute, stacked by cohort (moderate at the bottom)."""
    order, _, _ = cohort_style(list(volume["cohort"].unique()))
    data = volume.assign(
        minute=utc_naive(volume["minute"]),
        order=volume["cohort"].map({c: i for i, c in enumerate(order)}).fillna(99),
    )[["minute", "cohort", "n", "order"]]
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=_x(domain=domain),
            y=alt.Y("sum(n):Q", title="posts / minute"),
            color=_cohort_color(legend=False, shown=list(volume["cohort"].unique())),
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("minute:T", format=TIME_FORMAT, title="minute (UTC)"),
                alt.Tooltip("cohort:N"),
                alt.Tooltip("n:Q", title="posts"),
            ],
        )
    )
    return alt.layer(bars, *marker_layers(markers, playhead, domain=domain)).properties(
        title="Posts per minute by cohort", height=240
    )


def ingest_chart(ingest: pd.DataFrame) -> alt.Chart:
    """Posts received per minute (health panel): one labelled bar per minute."""
    data = ingest.assign(received=utc_naive(ingest["minute"]).dt.strftime(TIME_FORMAT))
    return (
        alt.Chart(data)
        .mark_bar(color="#455a64")
        .encode(
            x=alt.X("received:O", title="received (UTC)", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("posts:Q", title="posts"),
            tooltip=[alt.Tooltip("received:O", title="minute (UTC)"), "posts:Q"],
        )
        .properties(height=220)
    )
